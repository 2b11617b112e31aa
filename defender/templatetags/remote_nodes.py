from django import template

from defender.remote.status import node_status as status_of

register = template.Library()


@register.filter
def node_status(node):
    return status_of(node)
