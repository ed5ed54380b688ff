"""One runner per backend behind one small interface (base.py); registry.py says which opens which format."""
