from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import include, path


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    return redirect("domain_list" if request.user.is_domain_admin else "alias_list")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness plus a database round trip, for load balancers and docker-compose."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("", include("signin.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("directory.urls")),
    path("", include("domainkeys.urls")),
    path("", include("gateways.urls")),
    path("", include("policy.urls")),
    path("", include("outbound.urls")),
    path("", include("operations.urls")),
]
