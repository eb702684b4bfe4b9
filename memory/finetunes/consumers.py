"""Websocket consumers of fine-tune jobs: one job's live page, its compare-in-chat page, and the Fine-tunes list."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from channels.db import database_sync_to_async

from a4ps_site.live import LiveConsumer
from a4ps_site.realtime import group_for
from memory.finetunes.models import ChatComparison, FineTuneJob
from memory.finetunes.services import FINETUNES_GROUP, compare_group, comparison_render, finetune_render


def _job_html(job_id: int) -> list[str]:
    job = FineTuneJob.objects.filter(pk=job_id).first()
    return [finetune_render(job=job)["status"]] if job else []


def _comparisons_html(job_id: int) -> list[str]:
    # What may have changed while the page was away: the newest comparisons, as the first page shows them.
    recent = ChatComparison.objects.select_related("voter").filter(job_id=job_id).order_by("-id")[:10]
    return [comparison_render(comparison=c) for c in recent]


class _OneJobConsumer(LiveConsumer):
    """A page of one job whose state is a few partials: catching up after a reconnect is sending their
    current versions (on connect and on a resume request). `group` names the job's group, `current_html`
    renders those partials; both take the job's id."""

    group: Callable[[int], str]
    current_html: Callable[[int], list[str]]

    async def resolve_groups(self) -> list[str] | None:
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        exists = await database_sync_to_async(FineTuneJob.objects.filter(pk=self.job_id).exists)()
        return [type(self).group(self.job_id)] if exists else None

    async def connect(self) -> None:
        await super().connect()
        if getattr(self, "joined", None):
            for html in await self.replay(0):
                await self.send(text_data=html)

    async def replay(self, after: int) -> list[str]:
        return await database_sync_to_async(type(self).current_html)(self.job_id)


class FineTuneConsumer(_OneJobConsumer):
    """Progress, loss chart and log of one job."""

    group = staticmethod(partial(group_for, "finetune"))
    current_html = staticmethod(_job_html)


class CompareConsumer(_OneJobConsumer):
    """Compare-in-chat: answers arrive on their cards as the worker gets them."""

    group = staticmethod(compare_group)
    current_html = staticmethod(_comparisons_html)


class FineTunesConsumer(LiveConsumer):
    """Rows of the Fine-tunes page change status and progress live."""

    groups_to_join = [FINETUNES_GROUP]
