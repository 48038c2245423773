"""The fast attribute writer produces what WTForms' own would, byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup
from wtforms import Form, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import core as wtforms_widgets

from web import widgets

KEYS = st.sampled_from(
    ["class_", "id", "name", "value", "data_role_name", "aria_describedby", "for_", "type"]
)
VALUES = st.one_of(
    st.booleans(),
    st.text(max_size=20),
    st.integers(),
    st.text(max_size=20).map(Markup),  # already-safe values keep their markup, quotes aside
)


@settings(deadline=None, max_examples=300)  # no timing: the first example pays for imports
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_same_attributes_as_wtforms(attributes: dict[str, Any]) -> None:
    ours = widgets.html_params(**attributes)
    assert isinstance(ours, Markup)
    assert ours == wtforms_widgets.html_params(**attributes)


def test_hostile_values_stay_inside_their_attribute() -> None:
    html = widgets.html_params(value='"><script>alert(1)</script>', data_x=Markup('a"b'))
    assert html == 'data-x="a&quot;b" value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"'


class _Sample(Form):  # type: ignore[misc]
    email = StringField("Email", validators=[DataRequired(), Length(max=30)])
    password = PasswordField("Password")
    submit = SubmitField("Go")


@pytest.mark.parametrize("name", ["email", "password", "submit"])
def test_installed_widgets_render_as_before(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    form = _Sample(data={"email": 'a"<b>@example.com'})
    field = form[name]
    kwargs = {"class": "input", "aria-invalid": "true", "autocomplete": "email"}
    widget_class = type(field.widget)
    monkeypatch.setattr(widget_class, "html_params", staticmethod(wtforms_widgets.html_params))
    before = field(**kwargs)
    monkeypatch.setattr(widget_class, "html_params", staticmethod(widgets.html_params))
    assert field(**kwargs) == before
