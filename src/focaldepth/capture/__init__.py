"""The capture toolkit for a focus-sweeping phone beside an RGB-D sensor (docs/capture.md).

* :mod:`~focaldepth.capture.sidecar`: Android Camera2 / iOS AVFoundation capture logs (JSON, CSV)
* :mod:`~focaldepth.capture.importer`: a capture -> frame folder + meta.json for ``predict``
* :mod:`~focaldepth.capture.sync`: clock offset and timestamp association of two streams
* :mod:`~focaldepth.capture.calibrate`: chessboard calibration of both cameras and the rig
* :mod:`~focaldepth.capture.register`: depth into the colour view, reprojection and edge errors
* :mod:`~focaldepth.capture.focus_curve`: raw lens value -> dioptres from shots at known distances
* :mod:`~focaldepth.capture.synthetic`: synthetic chessboard views and plane depth for tests
"""
