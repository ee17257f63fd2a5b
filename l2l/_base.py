"""Type aliases shared by the library."""

from typing import Any

import jax

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
Params = Any
Updates = Any
MetaParams = Any
OptState = Any
