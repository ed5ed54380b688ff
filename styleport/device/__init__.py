"""Device environments styleport can prepare on a Linux host (``styleport device setup arm64``)."""
