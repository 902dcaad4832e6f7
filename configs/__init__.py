"""The hydra configs (``reflexarc.configs``): YAML that selects and overrides the dataclass
schemas registered next to the code. A package only so that they install with the code and
are found relative to it, never the working directory."""
