"""The five built-in specialists; importing this package registers them."""

from dfpanel.models.specialists import av, bg, cm, rr, tm  # noqa: F401
from dfpanel.models.specialists.base import (  # noqa: F401
    Specialist,
    SpecialistOutput,
    create_specialist,
    list_specialists,
    register_specialist,
    specialist_class,
)
