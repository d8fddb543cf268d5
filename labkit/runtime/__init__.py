"""Which tool answers in this mode: cheap probes, the mode decision, the PATH shims for `sbx`/`docker model`."""
