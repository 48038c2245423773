"""The use cases' one vocabulary for "no": typed refusals, raised (as :class:`InvalidInput`
is) and translated once per surface: the API answers each with one problem type
(``web/api/base.py``), the pages show it under the field it names, or as the 429 page
(``web/refusals.py``). A refusal changes nothing: raised inside a unit of work, it rolls the
transaction back."""

from __future__ import annotations

from shared import i18n
from shared.i18n import N_


class Refused(Exception):
    """A request the rules refuse. ``field``: the input it is about (shown under it), if any."""

    status = 400
    title = N_("Refused")
    problem_type = "about:blank"  # RFC 9457: the title says it all; a few have their own
    field: str | None = None

    def __init__(self, message: str) -> None:
        # In the language of whoever is asking (the request's, shared.i18n); a catalog's
        # message id is translated here, anything else kept as it is.
        message = i18n.gettext(message)
        super().__init__(message)
        self.message = message


class Locked(Refused):
    """Too many attempts: counted before each check, and this one is over the limit."""

    status = 429
    title = N_("Too many attempts")

    def __init__(self, retry_after: int, what: str = N_("wrong passwords or codes")) -> None:
        super().__init__(
            i18n.gettext("Too many %(what)s. Try again in %(wait)s.")
            % {"what": i18n.gettext(what), "wait": i18n.format_duration(retry_after)}
        )
        self.retry_after = retry_after
        self.what = what


class CodeSpent(Locked):
    """An emailed sign-in code has had all its tries: only a new code can work."""

    def __init__(self, retry_after: int) -> None:
        Refused.__init__(self, N_("That code has had too many wrong tries. Ask for a new code."))
        self.retry_after = retry_after
        self.what = N_("wrong codes")


class ReauthenticationRequired(Refused):
    """A sensitive change, and the sign-in asking authenticated too long ago (more than
    REAUTHENTICATION_TIMEOUT): its person must show it is them again first."""

    status = 401
    title = N_("Re-authentication required")
    problem_type = "/problems/reauthentication-required"

    def __init__(self) -> None:
        super().__init__(
            N_(
                "Confirm it is you first: sign in again on /account/reauthenticate (or "
                "POST /api/v1/reauthenticate), then repeat this request."
            )
        )


class WrongPassword(Refused):
    """The account's password, typed to confirm an operation, is not the right one."""

    title = N_("Wrong password")

    def __init__(self, field: str = "password") -> None:
        if field == "current_password":
            super().__init__(N_("Your current password is not correct."))
        else:
            super().__init__(N_("Your password is not correct."))
        self.field = field


class WrongCode(Refused):
    """A second factor (authenticator code or recovery code) that is not right."""

    title = N_("Wrong code")
    field = "code"

    def __init__(
        self,
        message: str = N_("That code is not right. Check your authenticator app's current code."),
    ) -> None:
        super().__init__(message)


class WrongConfirmation(Refused):
    """What was typed to confirm a destructive change is not what was asked for."""

    status = 422
    title = N_("Invalid request")

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotApplicable(Refused):
    """Nothing to do in the account's state (no sign-in waiting, already on, no such thing)."""

    status = 409
    title = N_("Not applicable")


class NotAccepted(Refused):
    """What an authenticator (or another outside party) answered is not accepted."""

    title = N_("Passkey refused")


class NotFound(Refused):
    """The thing named (a passkey, a sign-in) is not the account's, or not there any more."""

    status = 404
    title = N_("Not found")
