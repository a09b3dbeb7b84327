# SPDX-License-Identifier: GPL-3.0-or-later
"""Flamenco Mini add-on for Blender: points Blender at a Flamenco Mini manager.

The manager serves this add-on, zipped, at /flamenco-addon.zip. The zip also holds
flamenco/manager/, the Python API client generated from api/flamenco-mini-openapi.yaml.
"""

bl_info = {
    "name": "Flamenco Mini",
    "author": "Flamenco Mini authors",
    "version": (0, 1, 0),
    "blender": (3, 6, 0),
    "description": "Submit to and inspect a Flamenco Mini render farm",
    "location": "Output Properties > Flamenco Mini",
    "category": "System",
}

try:
    import bpy  # only present inside Blender
except ImportError:
    bpy = None

from . import comms  # noqa: E402


if bpy is not None:

    class FLAMENCO_MINI_OT_ping(bpy.types.Operator):
        """Ask the manager for its version"""

        bl_idname = "flamenco_mini.ping_manager"
        bl_label = "Ping Flamenco Mini Manager"

        def execute(self, context):
            url = context.preferences.addons[__package__].preferences.manager_url
            try:
                self.report({"INFO"}, comms.describe_manager(url))
            except Exception as ex:  # the user wants to see any failure
                self.report({"ERROR"}, "Cannot reach %s: %s" % (url, ex))
                return {"CANCELLED"}
            return {"FINISHED"}

    class FlamencoMiniPreferences(bpy.types.AddonPreferences):
        bl_idname = __package__

        manager_url: bpy.props.StringProperty(name="Manager URL", default="http://localhost:8080")

        def draw(self, context):
            self.layout.prop(self, "manager_url")
            self.layout.operator(FLAMENCO_MINI_OT_ping.bl_idname)

    _classes = (FLAMENCO_MINI_OT_ping, FlamencoMiniPreferences)
else:
    _classes = ()


def register():
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
