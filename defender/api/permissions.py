"""What a token may do is what its user may: the model permissions of the user's group (Viewers read)."""

from rest_framework import permissions


class ModelPermissions(permissions.DjangoModelPermissions):
    """DRF's model permissions, with reading needing the view permission too."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }
