"""Status page tables: pages (by team) and slugs (unique across the service)."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection

from chalicelib.storage.base import BaseModel


class PublishedPages(GlobalSecondaryIndex["StatusPageModel"]):
    """Every published page (``listed`` is set only while published): what the hourly refresh republishes."""

    class Meta:
        index_name = "listed-index"
        projection = KeysOnlyProjection()

    listed = UnicodeAttribute(hash_key=True)
    page_id = UnicodeAttribute(range_key=True)


class StatusPageModel(BaseModel):
    logical_name = "status_pages"

    class Meta:
        pass

    team_id = UnicodeAttribute(hash_key=True)
    page_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    slug = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    published = BooleanAttribute(default=True)
    components = JSONAttribute(default=list)  # [{monitor_id, display_name, group}], in page order
    custom_domain = UnicodeAttribute(null=True)
    listed = UnicodeAttribute(null=True)  # "published" while published (the sparse index above)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute()
    version = VersionAttribute()
    by_listed = PublishedPages()


class SlugModel(BaseModel):
    """One item per slug in use: created in the same transaction as its page, so a slug is taken once."""

    logical_name = "status_page_slugs"

    class Meta:
        pass

    slug = UnicodeAttribute(hash_key=True)
    team_id = UnicodeAttribute()
    page_id = UnicodeAttribute()
