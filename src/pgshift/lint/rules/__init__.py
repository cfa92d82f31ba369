"""One lint rule per module; each module defines ``RULE``. Ids are frozen once released."""
