"""fp16 device arithmetic on x86: the emulators behind ``--emulate`` (emulate.py), one per format."""
