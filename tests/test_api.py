"""Every public name is importable and documented."""

import l2l
import pytest


@pytest.mark.parametrize('name', l2l.__all__)
def test_public_name_exists_and_has_docstring(name):
  obj = getattr(l2l, name)
  assert obj.__doc__ and obj.__doc__.strip(), name


def test_all_is_sorted_and_unique():
  assert list(l2l.__all__) == sorted(set(l2l.__all__), key=list(l2l.__all__).index)
  assert len(set(l2l.__all__)) == len(l2l.__all__)
