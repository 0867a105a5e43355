"""The console's shared layout, static files and rendering helpers.

Pages live with their domain (``core/views.py`` and ``core/templates/core/``); this
package holds only what every page shares.
"""
