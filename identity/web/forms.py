"""The pages' forms (Flask-WTF: every one carries a CSRF token)."""

from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import BooleanField, HiddenField, PasswordField, StringField, widgets
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets.core import clean_key


def html_params(**attributes) -> Markup:
    """wtforms' html_params, with the same output, built with plain string joins.

    wtforms builds each attribute with Markup.format, whose escaping formatter costs about
    50 µs a field: a third of the sign-in page's rendering.
    """
    parts = []
    for key, value in sorted(attributes.items()):
        if value is True:
            parts.append(clean_key(key))
        elif value is not False:
            parts.append(f'{clean_key(key)}="{escape(value)}"')
    return Markup(" ".join(parts))


class TextInput(widgets.TextInput):
    html_params = staticmethod(html_params)


class PasswordInput(widgets.PasswordInput):
    html_params = staticmethod(html_params)


class CheckboxInput(widgets.CheckboxInput):
    html_params = staticmethod(html_params)


class LoginForm(FlaskForm):
    username = StringField("User name or email", validators=[DataRequired(), Length(max=320)], widget=TextInput())
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)], widget=PasswordInput())
    remember = BooleanField("Keep me signed in", widget=CheckboxInput())


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)],
                                     widget=PasswordInput())
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)], widget=PasswordInput())
    confirm_password = PasswordField("Confirm new password", validators=[DataRequired(), Length(max=1024)],
                                     widget=PasswordInput())
    # shown to a user with a second factor whose sign-in did not use it recently (mfa.code_required)
    otp = StringField("Code from your authenticator app", validators=[Optional(), Length(max=64)], widget=TextInput())


class ForgotPasswordForm(FlaskForm):
    username = StringField("User name or email", validators=[DataRequired(), Length(max=320)], widget=TextInput())


class ResetPasswordForm(FlaskForm):
    token = HiddenField(validators=[Length(max=200)])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)], widget=PasswordInput())
    confirm_password = PasswordField("Confirm new password", validators=[DataRequired(), Length(max=1024)],
                                     widget=PasswordInput())


class ConfirmForm(FlaskForm):
    """A form with nothing but its CSRF token: consent, sign-out, revoke."""


class SecondFactorForm(FlaskForm):
    """The second sign-in step: a code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(), Length(max=64)], widget=TextInput())


class TotpConfirmForm(FlaskForm):
    code = StringField("Code from the app", validators=[DataRequired(), Length(max=64)], widget=TextInput())


class RegenerateCodesForm(FlaskForm):
    # shown to a sign-in that did not use the second factor recently (mfa.prove_second_factor)
    otp = StringField("A current code or a recovery code", validators=[Optional(), Length(max=64)],
                      widget=TextInput())


class RemoveFactorForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)], widget=PasswordInput())
    code = StringField("A current code or a recovery code", validators=[DataRequired(), Length(max=64)],
                       widget=TextInput())


class RegisterForm(FlaskForm):
    """Self-registration; the service checks the values (services/registration.py)."""

    username = StringField("User name", validators=[Length(max=1024)], widget=TextInput())
    email = StringField("Email address", validators=[Length(max=1024)], widget=TextInput())
    name = StringField("Your name (optional)", validators=[Length(max=1024)], widget=TextInput())
    password = PasswordField("Password", validators=[Length(max=1024)], widget=PasswordInput())
    confirm_password = PasswordField("Confirm password", validators=[Length(max=1024)], widget=PasswordInput())


class ChangeEmailForm(FlaskForm):
    email = StringField("New email address", validators=[DataRequired(), Length(max=1024)], widget=TextInput())
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)],
                                     widget=PasswordInput())
    # shown to a user with a second factor whose sign-in did not use it recently (mfa.code_required)
    otp = StringField("Code from your authenticator app", validators=[Optional(), Length(max=64)], widget=TextInput())
