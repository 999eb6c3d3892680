# Integer kernels for the feature fast path, compiled by the viper emitter.
#
# Every loop here works on preallocated int16 / int32 arrays and allocates nothing. The FFT
# runs in ONE work buffer of 4 * (n/2 + 1) bytes: interleaved int16 complex values (re, im)
# while it transforms (block floating point keeps every component below 2**15), then, in the
# same words, the int32 one-sided powers (real_power). The quarter-wave cosine table is uint16
# (0..32768). The arithmetic is written for a 32-bit MCU (ESP32, RP2040): every intermediate
# stays below 2**31 (the bound is noted beside each product), accumulators that could grow
# past that are kept as two words (hi * 2**29 + lo). Pointer loads are zero-extended, so
# signed int16 values are sign-extended by hand: (v ^ 0x8000) - 0x8000; the int32 words read
# back (powers, sums) are never negative.
import micropython


@micropython.viper
def clipped16(buf, n: int, fs: int) -> int:
    """1 if any of the first n int16 samples is at or beyond +-fs, else 0."""
    p = ptr16(buf)
    lo = 0 - fs
    i = 0
    while i < n:
        v = (int(p[i]) ^ 0x8000) - 0x8000
        if v >= fs or v <= lo:
            return 1
        i += 1
    return 0


@micropython.viper
def sum_min_max16(buf, n: int, res) -> int:
    """res[0..2] = sum, min, max of the first n int16 samples (|sum| < 2**25 for n <= 1024)."""
    p = ptr16(buf)
    r = ptr32(res)
    s = 0
    mn = 32767
    mx = -32768
    i = 0
    while i < n:
        v = (int(p[i]) ^ 0x8000) - 0x8000
        s += v
        if v < mn:
            mn = v
        if v > mx:
            mx = v
        i += 1
    r[0] = s
    r[1] = mn
    r[2] = mx
    return 0


@micropython.viper
def moments_window(buf, n: int, m0: int, lsh: int, rsh: int, frac: int, qcos, work,
                   res) -> int:
    """Mean-removed moments and the Hann-windowed FFT input of one axis.

    d = ((x - m0) << lsh) - frac   (or (x - m0) >> rsh): |d| < 2**14 by choice of the shifts.
    res[0] = sum d; res[1..2] = sum d**2 (hi, lo); res[3..6] = sum d**3 split as
    sum d*qh (hi, lo) and sum d*ql (hi, lo); res[7..12] = sum d**4 split as sum qh**2,
    sum qh*ql, sum ql**2 (hi, lo each), where q = d*d = qh * 2**14 + ql.
    The windowed samples xw[i] = d * hann[i] (Q15 Hann from the quarter-wave cosine table of
    length n) are packed for a half-length complex FFT as int16 (re, im) pairs: work[i] = xw[i]
    (even i the real parts, odd i the imaginary ones); work may be buf itself (sample i is
    read before xw[i] is stored). Returns max |xw| (< 2**14).
    """
    p = ptr16(buf)
    c = ptr16(qcos)
    w16 = ptr16(work)
    r = ptr32(res)
    q1 = n >> 2
    h = n >> 1
    s1 = 0
    s2h = 0
    s2l = 0
    s3ah = 0
    s3al = 0
    s3bh = 0
    s3bl = 0
    s4ah = 0
    s4al = 0
    s4bh = 0
    s4bl = 0
    s4ch = 0
    s4cl = 0
    mx = 0
    i = 0
    while i < n:
        v = (int(p[i]) ^ 0x8000) - 0x8000
        d = v - m0
        if rsh:
            d = d >> rsh
        else:
            d = (d << lsh) - frac
        s1 += d
        q = d * d  # < 2**28
        s2l += q
        s2h += s2l >> 29
        s2l &= 0x1FFFFFFF
        qh = q >> 14  # < 2**14
        ql = q & 0x3FFF
        s3al += d * qh  # |.| < 2**28
        s3ah += s3al >> 29  # arithmetic shift: floor, so negative sums split right too
        s3al &= 0x1FFFFFFF
        s3bl += d * ql
        s3bh += s3bl >> 29
        s3bl &= 0x1FFFFFFF
        s4al += qh * qh
        s4ah += s4al >> 29
        s4al &= 0x1FFFFFFF
        s4bl += qh * ql
        s4bh += s4bl >> 29
        s4bl &= 0x1FFFFFFF
        s4cl += ql * ql
        s4ch += s4cl >> 29
        s4cl &= 0x1FFFFFFF
        # Hann window w = (1 - cos(2 pi i / n)) / 2 in Q15 from the quarter-wave table
        k = i
        if k > h:
            k = n - k
        if k <= q1:
            cs = int(c[k])
        else:
            cs = 0 - int(c[h - k])
        w = (32768 - cs) >> 1  # 0..32768
        x = d * w  # |d * w| < 2**29
        x = (x + 16383 + ((x >> 15) & 1)) >> 15  # round half to even
        w16[i] = x
        if x < 0:
            x = 0 - x
        if x > mx:
            mx = x
        i += 1
    r[0] = s1
    r[1] = s2h
    r[2] = s2l
    r[3] = s3ah
    r[4] = s3al
    r[5] = s3bh
    r[6] = s3bl
    r[7] = s4ah
    r[8] = s4al
    r[9] = s4bh
    r[10] = s4bl
    r[11] = s4ch
    r[12] = s4cl
    return mx


@micropython.viper
def fft_bfp(work, n: int, qcos, nt: int, mx: int) -> int:
    """In-place radix-2 DIT complex FFT of length n on interleaved int16 (re, im) pairs with
    block floating point; qcos is the quarter-wave cosine table of a length-nt transform
    (nt >= n).

    Invariant before each stage: every component < 2**15 (mx is the current maximum). A
    butterfly output component is at most (1 + sqrt 2) * mx, so a stage shifts its outputs
    right by sh = 0, 1 or 2, the least that keeps (1 + sqrt 2) * mx / 2**sh < 2**15.
    Twiddles are Q15 (+-32768 = +-1); |br * wr + bi * ws| <= |b| |w| <= sqrt(2) * 2**30.
    Returns the block exponent e: true spectrum = result * 2**e.
    """
    p = ptr16(work)
    pw = ptr32(work)  # one (re, im) pair per word: the permutation moves words
    c = ptr16(qcos)
    q1 = nt >> 2
    h = nt >> 1
    # bit-reversal permutation
    hn = n >> 1
    j = 0
    i = 0
    while i < n - 1:
        if i < j:
            t = pw[i]
            pw[i] = pw[j]
            pw[j] = t
        k = hn
        while k <= j:
            j -= k
            k >>= 1
        j += k
        i += 1
    e = 0
    size = 2
    step = h  # twiddle index step in the nt table: nt / size
    while size <= n:
        half = size >> 1
        sh = 0
        if mx >= 13500:
            sh = 1
            if mx >= 27000:
                sh = 2
        e += sh
        rnd = 0
        if sh:
            rnd = (1 << (sh - 1)) - 1
        nmx = 0
        jj = 0
        tw = 0
        while jj < half:
            # w = exp(-2 pi j tw / n) = wr - j ws, from the quarter-wave table
            if tw <= q1:
                wr = int(c[tw])
                ws = int(c[q1 - tw])
            else:
                wr = 0 - int(c[h - tw])
                ws = int(c[tw - q1])
            a = jj
            while a < n:
                b = a + half
                br = (int(p[2 * b]) ^ 0x8000) - 0x8000
                bi = (int(p[2 * b + 1]) ^ 0x8000) - 0x8000
                tr = (br * wr + bi * ws + 16384) >> 15
                ti = (bi * wr - br * ws + 16384) >> 15
                ar = (int(p[2 * a]) ^ 0x8000) - 0x8000
                ai = (int(p[2 * a + 1]) ^ 0x8000) - 0x8000
                o1 = ar + tr
                o2 = ai + ti
                o3 = ar - tr
                o4 = ai - ti
                if sh:
                    # round half to even: a plain +half bias would pile up into low bins
                    o1 = (o1 + rnd + ((o1 >> sh) & 1)) >> sh
                    o2 = (o2 + rnd + ((o2 >> sh) & 1)) >> sh
                    o3 = (o3 + rnd + ((o3 >> sh) & 1)) >> sh
                    o4 = (o4 + rnd + ((o4 >> sh) & 1)) >> sh
                p[2 * a] = o1  # |o| < 2**15: exact in int16
                p[2 * a + 1] = o2
                p[2 * b] = o3
                p[2 * b + 1] = o4
                if o1 < 0:
                    o1 = 0 - o1
                if o2 < 0:
                    o2 = 0 - o2
                if o3 < 0:
                    o3 = 0 - o3
                if o4 < 0:
                    o4 = 0 - o4
                if o1 > nmx:
                    nmx = o1
                if o2 > nmx:
                    nmx = o2
                if o3 > nmx:
                    nmx = o3
                if o4 > nmx:
                    nmx = o4
                a += size
            jj += 1
            tw += step
        mx = nmx
        size <<= 1
        step >>= 1
    return e


@micropython.viper
def real_power(work, m: int, qcos) -> int:
    """Split the length-m complex FFT Z of the packed real signal into its length-2m
    spectrum X[k], k = 0..m, and store one-sided powers p[k] = |X[k]|**2 / 4 (DC and Nyquist
    halved) as int32 word k of work (m + 1 words): the pair (k, m - k) is read, then its two
    words are overwritten, so the powers take the place of the spectrum in the same buffer. X is formed at half scale, so the true spectrum
    is X * 2**(e + 1) with e the FFT block exponent.

    X[k] = E + W**k O with E = (Z[k] + conj Z[m-k]) / 2, O = (Z[k] - conj Z[m-k]) / 2j and
    W = exp(-j pi / m). Components of Z < 2**15, so the half-scale X < 1.21 * 2**15 and each
    squared component < 2**31 before the >> 2. Returns the k >= 1 of the largest power.
    """
    p16 = ptr16(work)
    pi = ptr32(work)
    c = ptr16(qcos)
    q1 = m >> 1  # quarter of the length-2m table
    best = 0
    kbest = 1
    k = 0
    while k <= (m >> 1):
        k2 = m - k
        if k == 0:
            k2 = 0
        ar = (int(p16[2 * k]) ^ 0x8000) - 0x8000
        ai = (int(p16[2 * k + 1]) ^ 0x8000) - 0x8000
        br = (int(p16[2 * k2]) ^ 0x8000) - 0x8000
        bi = (int(p16[2 * k2 + 1]) ^ 0x8000) - 0x8000
        # the pair (k, m - k) shares E and O up to conjugation
        er = ar + br
        er = (er + 1 + ((er >> 2) & 1)) >> 2  # /4, round half to even
        ei = ai - bi
        ei = (ei + 1 + ((ei >> 2) & 1)) >> 2
        orr = ai + bi
        orr = (orr + 1 + ((orr >> 2) & 1)) >> 2
        oi = br - ar
        oi = (oi + 1 + ((oi >> 2) & 1)) >> 2
        if k <= q1:
            wr = int(c[k])
            ws = int(c[q1 - k])
        else:
            wr = 0 - int(c[m - k])
            ws = int(c[k - q1])
        tr = (wr * orr + ws * oi + 16384) >> 15
        ti = (wr * oi - ws * orr + 16384) >> 15
        xr = er + tr
        xi = ei + ti
        p = ((xr * xr + 2) >> 2) + ((xi * xi + 2) >> 2)
        # X[m - k] = conj(E) + W**(m-k) conj(O)... = conj(E - W**k O)
        yr = er - tr
        yi = ti - ei
        q = ((yr * yr + 2) >> 2) + ((yi * yi + 2) >> 2)
        if k == 0:
            p >>= 1  # DC
            q >>= 1  # Nyquist, stored at index m
            k2 = m
        pi[k] = p
        pi[k2] = q
        if k > 0 and p > best:
            best = p
            kbest = k
        if k2 != k and k2 > 0 and q > best:
            best = q
            kbest = k2
        k += 1
    return kbest


@micropython.viper
def band_sum(pw, k0: int, k1: int, res, at: int) -> int:
    """res[at], res[at+1] = sum of pw[k0:k1] as (hi, lo) words (each pw < 2**30 + 1)."""
    p = ptr32(pw)
    r = ptr32(res)
    hi = 0
    lo = 0
    k = k0
    while k < k1:
        lo += int(p[k])
        hi += lo >> 29
        lo &= 0x1FFFFFFF
        k += 1
    r[at] = hi
    r[at + 1] = lo
    return 0


@micropython.viper
def vel_sum(pw, k0: int, k1: int, kv0sq: int, ends, res, at: int) -> int:
    """Sum of pw[k] * (kv0 / k)**2 for k in k0..k1-1 as (hi, lo) words, the weight as a Q14
    mantissa m in [2**13, 2**14] and an exponent e: pw[k] * m * 2**-(14 + e).

    The band's first and last bin (partly inside it) take (m, e) from ends[0..3] (uint16).
    Every other bin computes its own, exactly what normalising the float (kv0 / k)**2 by
    doubling gives, from integers: e doublings of a = kv0**2 (until 2a >= k**2, at most 24),
    then m = round(a * 2**14 / k**2) by 15 steps of shift-and-subtract division (no divide
    instruction, every intermediate < 2 k**2). pw < 2**30 is split as ph * 2**14 + pl so each
    product stays < 2**30.
    """
    p = ptr32(pw)
    ed = ptr16(ends)
    r = ptr32(res)
    hi = 0
    lo = 0
    k = k0
    while k < k1:
        if k == k0:
            mm = int(ed[0])
            sh = int(ed[1])
        elif k == k1 - 1:
            mm = int(ed[2])
            sh = int(ed[3])
        else:
            k2 = k * k
            a = kv0sq
            sh = 0
            while (a << 1) < k2 and sh < 24:
                a <<= 1
                sh += 1
            q = 0
            j = 0
            while j < 15:
                a <<= 1
                q <<= 1
                if a >= k2:
                    a -= k2
                    q |= 1
                j += 1
            mm = (q + 1) >> 1  # a * 2**15 / k**2 = q + rest: round(q / 2)
        v = int(p[k])
        t = (v >> 14) * mm + (((v & 0x3FFF) * mm) >> 14)  # <= 2**30 + 2**14
        if sh:
            t = (t + (1 << (sh - 1))) >> sh
        lo += t
        hi += lo >> 29
        lo &= 0x1FFFFFFF
        k += 1
    r[at] = hi
    r[at + 1] = lo
    return 0


@micropython.viper
def line_sums(pw, k0: int, k1: int, res) -> int:
    """res[0..1] = sum of pw[k] and res[2..3] = sum of k * pw[k] for k in k0..k1-1, each as
    (hi, lo) words (pw < 2**30 + 1, k < 2**14: k * pw is split as k * ph * 2**14 + k * pl)."""
    p = ptr32(pw)
    r = ptr32(res)
    hi = 0
    lo = 0
    khi = 0
    klo = 0
    k = k0
    while k < k1:
        v = int(p[k])
        lo += v
        hi += lo >> 29
        lo &= 0x1FFFFFFF
        # k * v = k * (v >> 14) * 2**14 + k * (v & 0x3FFF); k * (v >> 14) < 2**30
        klo += (k * (v & 0x3FFF)) + ((k * (v >> 14)) & 0x7FFF) * 16384
        khi += (k * (v >> 14)) >> 15
        khi += klo >> 29
        klo &= 0x1FFFFFFF
        k += 1
    r[0] = hi
    r[1] = lo
    r[2] = khi
    r[3] = klo
    return 0


@micropython.viper
def copy_bytes(dst, at: int, src, n: int) -> int:
    """dst[at:at+n] = the first n bytes of src's buffer (an array('f') into a bytearray:
    its float32 values little-endian as they are on every supported MCU), no allocation."""
    d = ptr8(dst)
    s = ptr8(src)
    i = 0
    while i < n:
        d[at + i] = s[i]
        i += 1
    return 0
