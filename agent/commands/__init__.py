"""The CLI's commands, one module each; :mod:`agent.commands.common` builds what they share."""
