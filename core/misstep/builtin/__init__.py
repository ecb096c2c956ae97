"""Components the core ships. Every module here is loaded as an ordinary plugin, named
``misstep.builtin.<module>`` (so ``MISSTEP_DISABLE_PLUGINS`` can block it like any other)."""
