"""Pages of the forge app."""
from personas.views import pending

forge_home = pending("Forge", "Forge a tool from a spec, watch its attempts run in the sandbox, manage live tools.")
