"""The shipped suite catalogue (TOML files). A package only so that it is installed with landbench."""
