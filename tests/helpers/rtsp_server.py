#!/usr/bin/python3
"""A real RTSP server for the tests (GStreamer's gst-rtsp-server, system Python with gi).

    /usr/bin/python3 tests/helpers/rtsp_server.py VIDEO.mp4 PORT [--path /stream]

Serves the MP4's H.264 without re-encoding on rtsp://127.0.0.1:PORT/stream, looping forever
(the EOS is dropped at the payloader and the pipeline seeks back to 0). Prints 'ready' once
listening. Not part of dfwatch: the daemon only ever sees a real RTSP server through OpenCV.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, video):
        super().__init__()
        self.set_launch(f"( filesrc location={video} ! qtdemux ! h264parse ! "
                        "rtph264pay name=pay0 pt=96 config-interval=-1 )")
        self.set_shared(True)

    def do_configure(self, media):
        pipeline = media.get_element()
        pay = pipeline.get_by_name("pay0")

        def on_event(pad, info):
            event = info.get_event()
            if event.type == Gst.EventType.EOS:  # swallow EOS and start over
                GLib.idle_add(lambda: pipeline.seek_simple(
                    Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0) and False)
                return Gst.PadProbeReturn.DROP
            return Gst.PadProbeReturn.OK

        pay.get_static_pad("sink").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)


def main():
    video, port = sys.argv[1], sys.argv[2]
    path = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--path" else "/stream"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    server.get_mount_points().add_factory(path, LoopingFactory(video))
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
