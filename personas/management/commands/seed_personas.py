"""Create or update the four personas from config/codex.toml."""
from django.core.management.base import BaseCommand, CommandError

from a4ps_site.config import ConfigError
from personas.persona_state import persona_sync_from_codex


class Command(BaseCommand):
    help = "Create or update the personas from config/codex.toml (live state is kept)."

    def handle(self, *args, **options):
        try:
            personas = persona_sync_from_codex()
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"personas ready: {', '.join(p.name for p in personas)}")
