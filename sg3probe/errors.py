"""Exception types whose message is a one-line answer for the user: what, why, what to do."""


class Sg3probeError(Exception):
    """Base of every error sg3probe reports to a user as one clear line."""


class CheckpointError(Sg3probeError):
    """A model file could not be read, or holds something we refuse or do not support."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for a global outside the allowlist; nothing from it was executed."""


class ConfigError(Sg3probeError):
    """A configuration value or key is not accepted."""


class PluginError(Sg3probeError):
    """A plugin failed to load or raised inside a hook."""


class ModelNotFoundError(Sg3probeError):
    """A model source is neither a file nor a registered zoo name."""
