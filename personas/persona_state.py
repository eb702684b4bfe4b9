"""Writes of the personas' own rows: sync from the codex, live activity, counters and hand-edited state."""
from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.template.loader import render_to_string

from a4ps_site.config import PersonaSpec, codex, codex_path
from a4ps_site.realtime import DASHBOARD_GROUP, broadcast
from personas.events import event_publish
from personas.models import CodexVersion, Persona
from personas.selectors import persona_cards


@transaction.atomic
def persona_sync_from_codex(*, specs: dict[str, PersonaSpec] | None = None) -> list[Persona]:
    """Create or update the Persona rows from the codex; live state is kept."""
    specs = specs if specs is not None else codex()
    personas = []
    for spec in specs.values():
        persona, _ = Persona.objects.update_or_create(
            name=spec.name,
            defaults={
                "order": spec.order,
                "role": spec.role,
                "title": spec.title,
                "system_prompt": spec.system_prompt,
                "principles": list(spec.principles),
            },
        )
        personas.append(persona)
    if not CodexVersion.objects.exists():
        CodexVersion.objects.create(number=1, text=codex_path().read_text(), reason="seeded from codex.toml")
    return personas


def persona_count_contribution(*, name: str, kind: str, tokens: int, dissonance: float | None) -> None:
    """The persona's live counters (part of the living image): contributions, tokens, last dissonance.

    Call inside the transaction that records the contribution."""
    persona = Persona.objects.select_for_update().filter(name=name).first()
    if persona is None:
        return
    state = dict(persona.state)
    counts = dict(state.get("contributions", {}))
    counts[kind] = counts.get(kind, 0) + 1
    state["contributions"] = counts
    state["tokens_generated"] = int(state.get("tokens_generated", 0)) + int(tokens or 0)
    if dissonance is not None:
        state["last_dissonance"] = dissonance
    Persona.objects.filter(pk=persona.pk).update(state=state)


def persona_activity_set(*, name: str | None, activity: str, run_id: int | None = None) -> None:
    """Mark a persona busy (and the others idle), or all idle with name=None; cards update live."""
    with transaction.atomic():
        for persona in Persona.objects.select_for_update():
            state = dict(persona.state)
            new = activity if persona.name == name else "idle"
            if state.get("activity") != new or (name and persona.name == name and state.get("run") != run_id):
                state["activity"] = new
                state["run"] = run_id if persona.name == name else None
                Persona.objects.filter(pk=persona.pk).update(state=state)
        cards = persona_cards()
        html = "".join(render_to_string("personas/_persona_card_oob.html", {"card": c}) for c in cards)
        transaction.on_commit(lambda: broadcast(DASHBOARD_GROUP, "ui.html", html=html))


def persona_state_set(*, name: str, state_json: str, by: Any = None) -> Persona:
    """Cognitive surgery: replace a persona's live state with an edited JSON object."""
    try:
        state = json.loads(state_json)
    except ValueError as exc:
        raise ValueError(f"The state is not valid JSON: {exc}") from None
    if not isinstance(state, dict):
        raise ValueError("The state must be a JSON object, e.g. {\"mood\": \"curious\"}.")
    with transaction.atomic():
        persona = Persona.objects.select_for_update().get(name=name)
        persona.state = state
        persona.save(update_fields=["state", "updated"])
        event_publish(kind="persona.state_edited", source=str(by or "architect"), payload={
            "persona": name, "message": f"{name}'s live state edited in the inspector"})
    return persona
