"""Tasks: data + model + loss + metrics + generation, wired for each application."""
