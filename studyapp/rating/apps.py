from django.apps import AppConfig


class RatingConfig(AppConfig):
    name = "studyapp.rating"
    label = "rating"
    verbose_name = "Raters and ratings"
