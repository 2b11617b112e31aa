from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

# Log in and out, and change one's own password. There is no password reset by email: the site sends no email, and
# administrators set passwords with `manage.py changepassword` or the Django admin.
account_patterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

urlpatterns = [
    path("accounts/", include(account_patterns)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("defender.api.urls")),
    path("", include("defender.urls")),
]

handler403 = "defender.views.errors.permission_denied"
