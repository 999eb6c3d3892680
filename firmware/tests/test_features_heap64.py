# Acquisition + features of 3 x 1024 samples at 3200 Hz in a 64 KB heap (kept small: the VM
# compiles this file into the same heap). Big buffers are made first, as the node should.
import gc
from array import array

from drivers.sim_accel import SimAccel
from vibenode.acquisition import Acquisition
from vibenode.features import FeatureExtractor

fe = FeatureExtractor(1024, 3200)
acc = SimAccel(tones=((0, 120.0, 0.5), (2, 700.0, 0.2)), noise_g=0.01, realtime=False)
acq = Acquisition(acc, 1024, 3200)
out = array("f", bytearray(4 * fe.nvalues))


def test_windows_in_64k():
    peak = 0
    for _ in range(20):
        flags = acq.capture()
        fe.compute(acq.x, acq.y, acq.z, acq.scale_g, out)
        assert flags == 0
        used = gc.mem_alloc()
        if used > peak:
            peak = used
        gc.collect()  # between windows, as the node does
    assert 0.35 < out[1] < 0.36, out[1]
    print("peak heap used", peak)


import mptest  # noqa: E402

mptest.main(globals())
