from django.urls import path

from defender import views

app_name = "defender"

urlpatterns = [
    path("", views.home, name="home"),
    path("settings/integrations/", views.IntegrationListView.as_view(), name="integration-list"),
    path("settings/proxy-rules/", views.ProxyRuleListView.as_view(), name="proxyrule-list"),
    path("actors/", views.ActorListView.as_view(), name="actor-list"),
]
