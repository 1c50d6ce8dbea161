"""The sealing table: each purpose's current data key, wrapped by KMS (``sealing.service``)."""

from __future__ import annotations

from pynamodb.attributes import BinaryAttribute, UnicodeAttribute, UTCDateTimeAttribute

from chalicelib.storage.base import BaseModel


class DataKeyModel(BaseModel):
    """The data key new secrets of one purpose are sealed with, as KMS wrapped it, replaced once it is old.  Only
    sealing reads it: a sealed value carries its own wrapped key, so this item is never needed to open one (a
    restored table opens without it; a lost item only means a new key)."""

    logical_name = "data_keys"

    class Meta:
        pass

    purpose = UnicodeAttribute(hash_key=True)  # ``alert-channel`` or ``monitor-headers``
    key_id = UnicodeAttribute()  # changes with every new key: what a replacement's conditional write compares
    wrapped = BinaryAttribute(legacy_encoding=False)
    created_at = UTCDateTimeAttribute()
