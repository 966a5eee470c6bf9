"""Errors a user can cause and fix. The CLI prints them as one line and exits with code 2."""


class VaekitError(Exception):
    """Bad input: a path, a file's content, a flag or a run folder. The message names what is wrong."""


def require_text(text: str, name: str, verb: str) -> str:
    """``text`` itself; an empty or blank one, which a text model would decode from padding alone, is an error
    naming the argument: "{name} is empty: cannot {verb} an empty text"."""
    if not text or not text.strip():
        raise VaekitError(f"{name} is empty: cannot {verb} an empty text")
    return text


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""

    def __init__(self, step: int, epoch: int, value: float):
        super().__init__(
            f"the loss became {value} at step {step} (epoch {epoch}); training stopped and the last good "
            "checkpoint was kept (try a lower --lr)"
        )
        self.step = step
        self.epoch = epoch
