"""Experiment configs (YAML), installed as package data so that `hm2bp demo` finds them anywhere."""
