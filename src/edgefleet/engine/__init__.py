"""The only code that talks to a container engine (httpx over its unix socket), and the
on-disk storage inspector."""
