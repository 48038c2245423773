"""Texts: short titled posts by people with a confirmed address, listed on the home page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from shared.models import TextPost
from shared.services import users
from shared.services.context import ServiceContext

TEXTS_PER_PAGE = 10
MAX_PAGE = 100_000  # far past any real page; keeps OFFSET arithmetic small


class NotConfirmed(Exception):
    """Only accounts with a confirmed address may publish."""


async def create_text(ctx: ServiceContext, author_id: int, title: str, content: str) -> TextPost:
    async with ctx.unit_of_work() as session:
        author = await users.by_id(session, author_id)
        if author is None or author.confirmed_at is None:
            raise NotConfirmed
        text = TextPost(title=title, content=content, author_id=author.id)
        session.add(text)
    return text


@dataclass(frozen=True, slots=True)
class TextPage:
    texts: list[TextPost]
    page: int
    pages: int


async def newest_texts(ctx: ServiceContext, page: int) -> TextPage:
    """One page of texts, newest first, with their authors."""
    page = min(max(1, page), MAX_PAGE)
    async with ctx.reading() as session:
        total = await session.scalar(select(func.count()).select_from(TextPost)) or 0
        texts = list(
            await session.scalars(
                select(TextPost)
                .options(joinedload(TextPost.author))
                .order_by(TextPost.created_at.desc(), TextPost.id.desc())
                .limit(TEXTS_PER_PAGE)
                .offset((page - 1) * TEXTS_PER_PAGE)
            )
        )
    return TextPage(texts=texts, page=page, pages=max(1, -(-total // TEXTS_PER_PAGE)))
