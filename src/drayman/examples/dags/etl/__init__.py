"""Helpers shared by the example DAGs: a bundle can carry ordinary Python modules."""
