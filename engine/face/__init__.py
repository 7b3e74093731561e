"""Face recognition engine: decode → detect → align → embed, with quality from :mod:`ood`."""
