"""Why a connection is turned away before its session opens."""

from typing import Optional

from proxyd.metrics import Failure


class Refusal(Exception):
    """``reason`` is shown to the tenant (close frame); ``detail`` goes to the log only."""

    def __init__(self, failure: Failure, code: int, reason: str, detail: Optional[str] = None) -> None:
        super().__init__(reason)
        self.failure = failure
        self.code = code
        self.reason = reason
        self.detail = detail or reason
