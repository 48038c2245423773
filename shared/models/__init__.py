"""The service's tables, by area: accounts (:mod:`.accounts`), the outboxes (:mod:`.outbox`),
deliverability (:mod:`.deliverability`), the identity provider (:mod:`.identity`), and the
column lengths (:mod:`.limits`); everything is importable from here, and importing this
package registers every table on ``Base.metadata``."""

from shared.models.accounts import *  # noqa: F403
from shared.models.deliverability import *  # noqa: F403
from shared.models.identity import *  # noqa: F403
from shared.models.limits import *  # noqa: F403
from shared.models.outbox import *  # noqa: F403
