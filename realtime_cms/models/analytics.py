"""Recommendations, A/B tests, event logs, metrics, audit log: seed area "Analytics & Logging"."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from realtime_cms.models.base import (
    Base,
    IntUnsigned,
    SiteId,
    TinyInt,
    UTCDateTime,
    created_at_column,
    enum,
    updated_at_column,
    utcnow,
)


def _site_id_column() -> Mapped[int | None]:
    """The optional `site_id` of the per-site analytics tables: rows go with their site."""
    return mapped_column(SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=True)


def _defaulted_now_column() -> Mapped[datetime | None]:
    """A nullable `DATETIME DEFAULT CURRENT_TIMESTAMP` column that is not named `created_at`."""
    return mapped_column(
        UTCDateTime(), nullable=True, default=utcnow, server_default=sa.func.current_timestamp()
    )


# --- Recommendations and personalisation -----------------------------------------------------


class RecommendationAnalytics(Base):
    __tablename__ = "recommendation_analytics"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    event_type: Mapped[str] = mapped_column(sa.String(50), index=True)
    score: Mapped[float | None] = mapped_column(sa.Float)
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()


class UserPreference(Base):
    __tablename__ = "user_preferences"
    __table_args__ = (sa.UniqueConstraint("user_id", "preference_key"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"))
    preference_key: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class UserSimilarity(Base):
    __tablename__ = "user_similarity"
    __table_args__ = (sa.UniqueConstraint("user_id_1", "user_id_2"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    user_id_1: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE")
    )
    user_id_2: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE")
    )
    score: Mapped[float] = mapped_column(sa.Float)
    calculated_at: Mapped[datetime | None] = _defaulted_now_column()


class UserContentInteraction(Base):
    __tablename__ = "user_content_interactions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    interaction_type: Mapped[str] = mapped_column(sa.String(50), index=True)
    value: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime | None] = created_at_column()


class UserBehaviorEvent(Base):
    __tablename__ = "user_behavior_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    session_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    event_name: Mapped[str] = mapped_column(sa.String(100), index=True)
    event_data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()


class RecommendationFeedback(Base):
    __tablename__ = "recommendation_feedback"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"))
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE")
    )
    recommendation_source: Mapped[str | None] = mapped_column(sa.String(100))
    feedback_type: Mapped[str] = mapped_column(sa.String(50))
    rating: Mapped[int | None] = mapped_column(TinyInt)
    comments: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()


class PersonalizationEvent(Base):
    __tablename__ = "personalization_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    content_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="SET NULL"), index=True
    )
    event_type: Mapped[str] = mapped_column(sa.String(50), index=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()


# --- A/B testing --------------------------------------------------------------------------------


class AbTest(Base):
    __tablename__ = "ab_tests"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default="draft", server_default="draft")
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


class AbTestAssignment(Base):
    __tablename__ = "ab_test_assignments"
    __table_args__ = (sa.UniqueConstraint("test_id", "user_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    test_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("ab_tests.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"))
    variation_name: Mapped[str] = mapped_column(sa.String(100))
    assigned_at: Mapped[datetime | None] = _defaulted_now_column()


class AbTestConversion(Base):
    __tablename__ = "ab_test_conversions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("ab_test_assignments.id", ondelete="CASCADE")
    )
    event_name: Mapped[str] = mapped_column(sa.String(100))
    converted_at: Mapped[datetime | None] = _defaulted_now_column()


# --- Event logs ---------------------------------------------------------------------------------


class AnalyticsEvent(Base):
    """The later, fuller of the seed's two `analytics_events` definitions."""

    __tablename__ = "analytics_events"
    __table_args__ = (sa.Index(None, "created_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    session_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    event_type: Mapped[str] = mapped_column(sa.String(100), index=True)
    event_data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()


class AiApiUsage(Base):
    __tablename__ = "ai_api_usage"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int | None] = _site_id_column()
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    api_name: Mapped[str] = mapped_column(sa.String(100))
    request_data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    response_data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    tokens_used: Mapped[int | None] = mapped_column(sa.Integer)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime | None] = created_at_column()


class PresenceEvent(Base):
    __tablename__ = "presence_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(sa.String(50), index=True)
    target_type: Mapped[str | None] = mapped_column(sa.String(50))
    target_id: Mapped[str | None] = mapped_column(sa.String(255))
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()


class AnalyticsFailure(Base):
    __tablename__ = "analytics_failures"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(sa.String(100))
    error_message: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[Any | None] = mapped_column(sa.JSON)
    failed_at: Mapped[datetime | None] = _defaulted_now_column()


# --- Aggregates ---------------------------------------------------------------------------------


class AnalyticsMetric(Base):
    __tablename__ = "analytics_metrics"
    __table_args__ = (sa.UniqueConstraint("site_id", "metric_name", "metric_date"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # Repaired: the seed's INT UNSIGNED becomes the BIGINT UNSIGNED of `sites.id`.
    site_id: Mapped[int] = mapped_column(
        SiteId, sa.ForeignKey("sites.id", ondelete="CASCADE"), index=True
    )
    metric_name: Mapped[str] = mapped_column(sa.String(100))
    metric_value: Mapped[Decimal] = mapped_column(sa.Numeric(15, 2))
    metric_date: Mapped[date] = mapped_column(sa.Date)
    created_at: Mapped[datetime | None] = created_at_column()


class AnalyticsDailySummary(Base):
    __tablename__ = "analytics_daily_summaries"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    summary_date: Mapped[date] = mapped_column(sa.Date, unique=True)
    total_page_views: Mapped[int] = mapped_column(IntUnsigned, default=0, server_default="0")
    unique_visitors: Mapped[int] = mapped_column(IntUnsigned, default=0, server_default="0")
    average_time_on_site: Mapped[int] = mapped_column(IntUnsigned, default=0, server_default="0")
    bounce_rate: Mapped[Decimal] = mapped_column(
        sa.Numeric(5, 2), default=Decimal("0.00"), server_default="0.00"
    )
    top_referrers: Mapped[list[Any] | None] = mapped_column(sa.JSON)
    top_pages: Mapped[list[Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime | None] = created_at_column()


class AnalyticsContentView(Base):
    __tablename__ = "analytics_content_views"
    __table_args__ = (sa.UniqueConstraint("content_id", "view_date"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    content_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("content_items.id", ondelete="CASCADE"), index=True
    )
    view_date: Mapped[date] = mapped_column(sa.Date, index=True)
    view_count: Mapped[int] = mapped_column(IntUnsigned, default=0, server_default="0")
    created_at: Mapped[datetime | None] = created_at_column()


class VersionAnalytics(Base):
    __tablename__ = "version_analytics"
    __table_args__ = (sa.Index(None, "user_id", "version_id"), sa.Index(None, "created_at"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # The seed gives no ON DELETE rule: a version's analytics go with the version.
    version_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(sa.String(50), index=True)
    # The seed gives no ON DELETE rule: events outlive the user, anonymised.
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    session_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    time_spent: Mapped[int | None] = mapped_column(IntUnsigned)
    page_exit: Mapped[bool | None] = mapped_column(sa.Boolean, default=False, server_default="0")
    referrer: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime | None] = created_at_column()


class VersionAnalyticsMetric(Base):
    __tablename__ = "version_analytics_metrics"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # The seed gives no ON DELETE rule: a version's metrics go with the version.
    version_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), unique=True
    )
    view_count: Mapped[int | None] = mapped_column(IntUnsigned, default=0, server_default="0")
    unique_views: Mapped[int | None] = mapped_column(IntUnsigned, default=0, server_default="0")
    average_time_spent: Mapped[int | None] = mapped_column(
        IntUnsigned, default=0, server_default="0"
    )
    bounce_rate: Mapped[Decimal | None] = mapped_column(
        sa.Numeric(5, 2), default=Decimal("0.00"), server_default="0.00"
    )
    last_viewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = created_at_column()
    updated_at: Mapped[datetime | None] = updated_at_column()


# --- Audit --------------------------------------------------------------------------------------


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (sa.Index(None, "entity_type", "entity_id"), sa.Index(None, "created_at"))

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    # The seed's implied FK, made real: the trail outlives the user, who becomes NULL.
    user_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    action_type: Mapped[str] = mapped_column(sa.String(100), index=True)
    entity_type: Mapped[str | None] = mapped_column(sa.String(100))
    entity_id: Mapped[int | None] = mapped_column(sa.Integer)
    ip_address: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    details: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(enum("success", "failure", name="audit_log_status"))
    created_at: Mapped[datetime | None] = created_at_column()
