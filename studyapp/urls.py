from django.contrib import admin
from django.urls import include, path

from studyapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("panel/", include("studyapp.studies.urls")),
    path("r/", include("studyapp.rating.urls")),
]
