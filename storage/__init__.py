"""Backends chosen by settings: embedded files on one machine (default) or shared servers for many replicas."""
