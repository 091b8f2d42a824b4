"""The forms' widgets render exactly what wtforms' own widgets render (only faster)."""

import pytest
from markupsafe import Markup
from wtforms.widgets.core import html_params as wtforms_html_params

from identity.web.forms import ChangePasswordForm, LoginForm, html_params


@pytest.mark.parametrize("attributes", [
    {"class_": "input input--invalid", "id": "username", "name": "username", "type": "text", "value": 'al"<i>&\'ce'},
    {"autofocus": True, "required": True, "disabled": False, "maxlength": 320, "value": ""},
    {"aria_describedby": "new_password-hint new_password-error", "aria_invalid": "true", "data_x_y": "1"},
    {"value": Markup("<b>kept</b>"), "checked": True},
    {},
])
def test_html_params_is_wtforms_html_params(attributes):
    assert html_params(**attributes) == wtforms_html_params(**attributes)


@pytest.mark.parametrize("form_class", [LoginForm, ChangePasswordForm])
def test_fields_render_as_with_wtforms_widgets(app, form_class):
    data = {"username": 'al"<ice', "password": "secret-value", "remember": "y", "current_password": "x",
            "new_password": "y", "confirm_password": "z"}
    with app.test_request_context("/account/login", method="POST", data=data):
        form = form_class()
        form.validate()
        for field in form:
            if field.name == "csrf_token":
                continue
            options = {"class_": "input", "autocomplete": "off", "autofocus": True, "aria_invalid": "true"}
            ours = field(**options)
            widget_class = type(field.widget)
            try:
                widget_class.html_params = staticmethod(wtforms_html_params)
                theirs = field(**options)
            finally:
                widget_class.html_params = staticmethod(html_params)
            assert ours == theirs
            assert "secret-value" not in ours, "passwords are never rendered back"
