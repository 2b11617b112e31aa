"""Labels and help texts live on the model fields: the console's forms and the admin show the same words, and both
keep a secret write-only with one mixin."""

import pytest
from django.contrib import admin
from django.forms import modelform_factory
from django.utils.html import escape
from django.utils.text import capfirst

from defender.forms.actors import ActorForm
from defender.forms.integrations import IntegrationForm
from defender.forms.proxy_rules import ProxyRuleForm
from defender.forms.remote_nodes import RemoteNodeForm
from defender.forms.write_only import WriteOnlySecretMixin
from defender.models import Integration, ProxyRule, RemoteNode
from tests.factories import CLIENT_SECRET, integration_form_data, make_integration, make_proxy_rule

pytestmark = pytest.mark.django_db

CONSOLE_FORMS = [IntegrationForm, ProxyRuleForm, RemoteNodeForm, ActorForm]


@pytest.mark.parametrize("form_class", CONSOLE_FORMS, ids=lambda form_class: form_class.__name__)
def test_each_field_of_a_console_form_has_its_models_label_and_help_text(form_class):
    RemoteNode.objects.create(name="dmz")  # with a node, Location says what it says on the model
    form = form_class()
    model = form._meta.model
    model_fields = {field.name for field in model._meta.get_fields()}
    # The fields a form has of its own: the certificate's upload, beside the model's certificate field; the health
    # check's and the alert sweep's schedules, which are periodic tasks of django-celery-beat rather than columns.
    assert set(form.fields) - model_fields <= {"client_certificate_file", "health_check_minutes", "sync_minutes"}
    for name, field in form.fields.items():
        if name not in model_fields:
            continue
        model_field = model._meta.get_field(name)
        assert field.label == capfirst(model_field.verbose_name), name
        assert field.help_text == model_field.help_text, name


def admin_form(model):
    """The admin's form for the model, built as the admin builds it (its form class, every editable field)."""
    return modelform_factory(model, form=admin.site._registry[model].form, fields="__all__")


@pytest.mark.parametrize("model", [Integration, ProxyRule, RemoteNode], ids=lambda model: model.__name__)
def test_the_admin_shows_the_labels_and_help_texts_the_console_shows(admin_client, django_user_model, model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "a-long-enough-password")
    admin_client.force_login(root)
    html = admin_client.get(f"/admin/defender/{model._meta.model_name}/add/").content.decode()
    for field in model._meta.get_fields():
        if getattr(field, "editable", False) and getattr(field, "help_text", ""):
            # The admin writes help texts out as they are; the console escapes them.
            assert field.help_text in html or escape(field.help_text) in html, field.name


@pytest.mark.parametrize(
    ("form_class", "field"),
    [
        (IntegrationForm, "client_secret"),
        (ProxyRuleForm, "password"),
        (admin_form(Integration), "client_secret"),
        (admin_form(ProxyRule), "password"),
    ],
    ids=["console integration", "console proxy rule", "admin integration", "admin proxy rule"],
)
def test_console_and_admin_forms_keep_a_secret_write_only_with_one_mixin(form_class, field):
    assert issubclass(form_class, WriteOnlySecretMixin)
    rule = make_proxy_rule(username="proxy-user", password="proxy-password")
    integration = make_integration()
    instance = integration if field == "client_secret" else rule
    form = form_class(instance=instance)
    rendered = str(form[field])
    assert 'type="password"' in rendered and "value=" not in rendered
    assert "saved" in form.fields[field].help_text  # it says a secret is kept, never what it is
    assert CLIENT_SECRET not in str(form) and "proxy-password" not in str(form)


def test_a_blank_secret_on_edit_keeps_the_stored_one_in_the_admin_as_in_the_console():
    integration = make_integration()
    data = integration_form_data(client_secret="")
    data.update(kind=integration.kind)
    form = admin_form(Integration)(data, instance=integration)
    assert form.is_valid(), form.errors
    form.save()
    integration.refresh_from_db()
    assert integration.client_secret == CLIENT_SECRET
