"""DVC stages: each module reads its params, calls the library and writes its outputs atomically."""
