"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input (config, path, data file). The message is the whole story: no traceback."""

    exit_code = 2


class ConfigError(UserError):
    """A config value is missing, unknown, of the wrong type or out of range."""


class DataError(UserError):
    """Dataset files are missing or malformed."""


class RunFailed(UserError):
    """Training went somewhere it cannot come back from: NaN losses, a collapsed GAN. The tuner
    records such a trial as failed, with this reason, and moves on."""


class NonFiniteLossError(RunFailed):
    """Training produced NaN/inf, usually a learning rate too high for the model."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM reached a run: it saved its state and stopped. A KeyboardInterrupt, so
    whatever already cleans up after Ctrl-C cleans up after a SIGTERM too."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
