"""The only code that talks to a container engine (aiodocker), and the on-disk storage inspector."""
