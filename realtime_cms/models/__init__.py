"""SQLAlchemy models, one module per seed area; importing this package registers every table."""

from realtime_cms.models import auth as auth
from realtime_cms.models.base import Base as Base
