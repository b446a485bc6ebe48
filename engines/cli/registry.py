"""The engines' subcommands (bundles, weights, the model server): its registry."""
from __future__ import annotations

from engines.cli import Command
from engines.cli import bundle_commands, triton_commands, weights_commands

COMMANDS = (
    Command("weights", weights_commands.register),
    Command("engines", bundle_commands.register),
    Command("serve-models", triton_commands.register_serve),
)
