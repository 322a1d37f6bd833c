"""The HTTPS API: one Powertools REST resolver (`app.py`) and one Router per resource (`routes/`)."""
