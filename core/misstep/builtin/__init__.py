"""Components the core ships, registered as ordinary plugins (see ``misstep.plugins.BUILTINS``)."""
