"""The command-line shell ``frood`` (``cli/frood.py``): thin, over the engine and the service layer."""
