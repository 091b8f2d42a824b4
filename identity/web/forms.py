"""The pages' forms (Flask-WTF: every one carries a CSRF token)."""

import secrets

from flask import request
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import BooleanField, HiddenField, PasswordField, StringField, widgets
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets.core import clean_key

from ..constants import PASSWORD_INPUT_MAX
from ..services.password_policy import too_long


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
    """No maxlength from the Length validator: a browser counts it in UTF-16 code units and cuts a
    filled or pasted password there without a word, so a maxlength of PASSWORD_INPUT_MAX held half
    as many emoji or other characters past U+FFFF as the policy allows. The form refuses an
    overlong password itself."""

    html_params = staticmethod(html_params)
    validation_attrs = ["required"]


class CheckboxInput(widgets.CheckboxInput):
    html_params = staticmethod(html_params)


class PageForm(FlaskForm):
    """A page's form: its fields come from the posted form alone.

    Flask-WTF reads a JSON body as the form too (ImmutableMultiDict of the parsed JSON): a body
    that was not an object, or a field that was a number, a list or an object, raised in the form
    and answered a 500. No page posts JSON, so a JSON body is a form with no fields."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if request.is_json:
                return None
            return super().wrap_formdata(form, formdata)


class OncePageForm(PageForm):
    """A form whose sending mails something that must be mailed once (a link, whose successor
    would end it): it carries a random value of the page shown, which the same form sent again
    (a double click, a browser's resend) carries again, and which the service spends with the
    mail (account_tokens.spend_once), so that the copy finds it spent and mails nothing."""

    once = HiddenField(validators=[Optional(), Length(max=64)])

    def with_new_value(self):
        """This form, with a value of its own for the page about to be shown."""
        self.once.data = secrets.token_urlsafe(16)
        return self


class NewPasswordCap:
    """A new password's input cap (PASSWORD_INPUT_MAX), refused with the policy's own message for a
    password too long ("Use at most 128 characters."), which the strength meter shows too: not
    WTForms' "Field cannot be longer than 1024 characters.", a limit the policy never allows."""

    def __call__(self, form, field):
        if field.data and len(field.data) > PASSWORD_INPUT_MAX:
            raise ValidationError(too_long())


class LoginForm(PageForm):
    username = StringField("User name or email", validators=[DataRequired(), Length(max=320)], widget=TextInput())
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_INPUT_MAX)], widget=PasswordInput())
    remember = BooleanField("Keep me signed in", widget=CheckboxInput())


class ChangePasswordForm(PageForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=PASSWORD_INPUT_MAX)],
                                     widget=PasswordInput())
    new_password = PasswordField("New password", validators=[DataRequired(), NewPasswordCap()], widget=PasswordInput())
    confirm_password = PasswordField("Confirm new password", validators=[DataRequired(), NewPasswordCap()],
                                     widget=PasswordInput())
    # shown to a user with a second factor whose sign-in did not use it recently (mfa.code_required)
    otp = StringField("Code from your authenticator app", validators=[Optional(), Length(max=64)], widget=TextInput())


class ForgotPasswordForm(OncePageForm):
    username = StringField("User name or email", validators=[DataRequired(), Length(max=320)], widget=TextInput())


class ResetPasswordForm(PageForm):
    token = HiddenField(validators=[Length(max=200)])
    new_password = PasswordField("New password", validators=[DataRequired(), NewPasswordCap()], widget=PasswordInput())
    confirm_password = PasswordField("Confirm new password", validators=[DataRequired(), NewPasswordCap()],
                                     widget=PasswordInput())


class ConfirmForm(PageForm):
    """A form with nothing but its CSRF token: consent, sign-out, revoke."""


class SendLinkForm(OncePageForm):
    """"Send the link again" (a verification link)."""


class SecondFactorForm(PageForm):
    """The second sign-in step: a code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(), Length(max=64)], widget=TextInput())


class TotpConfirmForm(PageForm):
    code = StringField("Code from the app", validators=[DataRequired(), Length(max=64)], widget=TextInput())


class RegenerateCodesForm(PageForm):
    # shown to a sign-in that did not use the second factor recently (mfa.prove_second_factor)
    otp = StringField("A current code or a recovery code", validators=[Optional(), Length(max=64)],
                      widget=TextInput())


class RemoveFactorForm(PageForm):
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_INPUT_MAX)], widget=PasswordInput())
    code = StringField("A current code or a recovery code", validators=[DataRequired(), Length(max=64)],
                       widget=TextInput())


class RegisterForm(PageForm):
    """Self-registration; the service checks the values (services/registration.py)."""

    username = StringField("User name", validators=[Length(max=1024)], widget=TextInput())
    email = StringField("Email address", validators=[Length(max=1024)], widget=TextInput())
    name = StringField("Your name (optional)", validators=[Length(max=1024)], widget=TextInput())
    password = PasswordField("Password", validators=[NewPasswordCap()], widget=PasswordInput())
    confirm_password = PasswordField("Confirm password", validators=[NewPasswordCap()], widget=PasswordInput())


class ChangeEmailForm(PageForm):
    email = StringField("New email address", validators=[DataRequired(), Length(max=1024)], widget=TextInput())
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=PASSWORD_INPUT_MAX)],
                                     widget=PasswordInput())
    # shown to a user with a second factor whose sign-in did not use it recently (mfa.code_required)
    otp = StringField("Code from your authenticator app", validators=[Optional(), Length(max=64)], widget=TextInput())
