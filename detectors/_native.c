/* detectors._native: per-event loops of the detectors, in C.
 *
 * - add_rows: WindowAggregator.add for a whole batch (below);
 * - hash64: sketches.hash64, the client hash (add_rows computes it for each client);
 * - utc_many, row_times: timeutil.fast_utc_many, and the event times of a decoded batch within the
 *   plausible range (events.decode_requests; at the end).
 *
 * Without this module (no compiler at install, or TOCSIN_NATIVE=0)
 * WindowAggregator.add_batch calls add for each event and timeutil uses numpy,
 * with the same results.
 *
 * add_rows(services, rows, ts, source, new_service, window, lateness, seen_rotation, watermark, boundary)
 * counts rows[i] at time ts[i] exactly as detectors/features.py's
 * WindowAggregator.add does (the specification: read the two side by side),
 * on the aggregator's own objects (the same dicts, bytearrays, sketches), so
 * whatever reads them afterwards cannot tell the two apart; the tests compare
 * them on random batches. What add does to the aggregator itself (the
 * source's watermark and window boundary, the late-event count) comes back
 * instead, for WindowAggregator.add_batch to apply: (steps, watermark,
 * boundary, late), steps being the event times at which the source's window
 * boundary moved. `services` is the aggregator's dict of ServiceWindows by
 * name, `new_service()` makes a missing one, `watermark` and `boundary` are
 * the source's before the batch. On an error (a row whose field has the
 * wrong type) the exception is raised and the objects hold the events
 * before it; the source's watermark is then not moved for them.
 *
 * The interface it relies on, all through the public C API (PyObject_GetAttr,
 * PyObject_SetAttr, method calls, and the concrete dict, list, bytearray,
 * int, float and str functions); no object layout, no private attribute:
 *
 *   rows        objects of a type whose fields service, status, latency_ms,
 *               endpoint, host, client_ip, country, asn, user_agent (and ts,
 *               for row_times) are data descriptors of the type (msgspec
 *               Struct fields, __slots__), with the generic attribute lookup
 *               (tp_getattro is PyObject_GenericGetAttr). A field is read by
 *               calling its descriptor (tp_descr_get, the descriptor
 *               protocol), which is what getattr does on such a type, without
 *               looking the name up again for each event. Any other type:
 *               NotImplemented, before anything changed.
 *   features.ServiceWindows   windows (dict start -> WindowCounts), last,
 *               closed_until, seen (SeenFilter), rotated_at, watermark, source.
 *   features.WindowCounts(start)   n, n5xx, n429, n4xx, new, hosting, with_ip
 *               (ints); hist (LogHistogram); hosts (dict host -> [count, 5xx,
 *               LogHistogram]); hll (HyperLogLog); top (SpaceSaving);
 *               countries, hosting_by, endpoints, agents (dicts of counts).
 *   sketches.LogHistogram()   bins (dict bin -> count), n.
 *   sketches.HyperLogLog      reg (bytearray of the 2**p registers).
 *   sketches.SpaceSaving      k, counts (dict key -> count), total, at_min
 *               (list or None), min_count.
 *   sketches.SeenFilter       cur, prev (lists of bytearrays of power-of-two
 *               sizes), fill, rotate(), grow().
 *   setup(...)  hands over once what the loop needs from the modules: the
 *               classes WindowCounts and LogHistogram, HOSTING_ASNS, the
 *               log-bin cache and function, and the constants.
 *
 * What makes it cheaper than the Python loop: the window's counters are
 * summed in C and written back once per batch, and the per-window objects
 * (dicts, registers, filters) are looked up once per batch, not per event; a
 * client's hash is computed here, and its register, rank and filter
 * positions derived from it; a latency's histogram bin is computed
 * (sketches.log_bin) rather than looked up. The dict updates of the string
 * fields remain: they are most of what is left.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

/* -- set once by setup() ------------------------------------------------ */
static PyObject *T_Window, *T_LogHist, *HOSTING, *LOG_BINS, *LOG_BIN;
static double LOG_K = 0.0; /* sketches._LOG_K; 0: log_bin is asked (not set up) */
static Py_ssize_t MAX_EP = 64, MAX_UA = 256;
static int HLL_P = 10;
static PyObject *S_OTHER, *ONE;

/* interned attribute names (the interface above) */
#define NAMES(X) \
    X(windows) X(last) X(closed_until) X(seen) X(rotated_at) X(watermark) X(source) \
    X(cur) X(prev) X(rotate) X(grow) X(fill) \
    X(n) X(n5xx) X(n429) X(n4xx) X(new) X(hosting) X(with_ip) X(hist) X(hosts) X(hll) X(top) \
    X(countries) X(hosting_by) X(endpoints) X(agents) \
    X(bins) X(reg) X(k) X(counts) X(total) X(at_min) X(min_count)
#define DECL(name) static PyObject *s_##name;
NAMES(DECL)

/* -- the fields of a row, read through their descriptors ----------------- */
enum { F_SERVICE, F_STATUS, F_LAT, F_EP, F_HOST, F_IP, F_COUNTRY, F_ASN, F_UA, F_TS, NFIELDS };
static const char *FIELD_NAMES[NFIELDS] = {
    "service", "status", "latency_ms", "endpoint", "host", "client_ip", "country", "asn", "user_agent", "ts",
};
typedef struct {
    PyTypeObject *type;
    PyObject *descr[NFIELDS]; /* type.<field>: a data descriptor */
} Layout;
#define MAX_LAYOUTS 4
static Layout layouts[MAX_LAYOUTS];
static int n_layouts;

/* How rows of type t are read; NULL (no error set) if t does not hold every field in a data descriptor. */
static Layout *layout_of(PyTypeObject *t)
{
    for (int i = 0; i < n_layouts; i++)
        if (layouts[i].type == t)
            return &layouts[i];
    if (n_layouts == MAX_LAYOUTS || t->tp_getattro != PyObject_GenericGetAttr)
        return NULL;
    Layout l;
    l.type = t;
    for (int f = 0; f < NFIELDS; f++) {
        /* (a descriptor asked for on the class, without an instance, returns itself) */
        PyObject *d = PyObject_GetAttrString((PyObject *)t, FIELD_NAMES[f]);
        if (d == NULL)
            PyErr_Clear();
        else if (Py_TYPE(d)->tp_descr_get == NULL || Py_TYPE(d)->tp_descr_set == NULL)
            Py_CLEAR(d);
        if (d == NULL) {
            for (int g = 0; g < f; g++)
                Py_DECREF(l.descr[g]);
            return NULL;
        }
        l.descr[f] = d;
    }
    Py_INCREF(t);
    layouts[n_layouts] = l;
    return &layouts[n_layouts++];
}

/* row.<field f> (a new reference; NULL with the error, e.g. AttributeError, if it has no value) */
static inline PyObject *field(const Layout *lay, PyObject *row, int f)
{
    PyObject *d = lay->descr[f];
    return Py_TYPE(d)->tp_descr_get(d, row, (PyObject *)lay->type);
}

/* -- Python's float floor division (float_floor_div), so that window starts are the same floats -- */
static double floordiv(double vx, double wx)
{
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod) {
        if ((wx < 0) != (mod < 0))
            div -= 1.0;
    }
    double fd;
    if (div) {
        fd = floor(div);
        if (div - fd > 0.5)
            fd += 1.0;
    }
    else
        fd = copysign(0.0, vx / wx);
    return fd;
}

/* -- small helpers ----------------------------------------------------- */
/* d[key] = v + by, v being d[key] (borrowed; NULL: absent, as 0) */
static int dict_set_plus(PyObject *d, PyObject *key, PyObject *v, long by)
{
    long c = 0;
    if (v != NULL) {
        c = PyLong_AsLong(v);
        if (c == -1 && PyErr_Occurred())
            return -1;
    }
    PyObject *nv = PyLong_FromLong(c + by);
    if (nv == NULL)
        return -1;
    int r = PyDict_SetItem(d, key, nv);
    Py_DECREF(nv);
    return r;
}

/* d[key] = d.get(key, 0) + by */
static int dict_incr(PyObject *d, PyObject *key, long by)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL && PyErr_Occurred())
        return -1;
    return dict_set_plus(d, key, v, by);
}

/* a capped count: key if it is counted already or there is room, else "(other)" */
static int dict_incr_capped(PyObject *d, PyObject *key, Py_ssize_t cap)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL && PyErr_Occurred())
        return -1;
    if (v != NULL || PyDict_GET_SIZE(d) < cap)
        return dict_set_plus(d, key, v, 1);
    return dict_incr(d, S_OTHER, 1);
}

/* obj.name += by (by != 0) */
static int attr_add(PyObject *obj, PyObject *name, long by)
{
    if (by == 0)
        return 0;
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    PyObject *d = PyLong_FromLong(by);
    if (d == NULL) {
        Py_DECREF(v);
        return -1;
    }
    PyObject *nv = PyNumber_Add(v, d);
    Py_DECREF(v);
    Py_DECREF(d);
    if (nv == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, nv);
    Py_DECREF(nv);
    return r;
}

static int attr_set_float(PyObject *obj, PyObject *name, double x)
{
    PyObject *v = PyFloat_FromDouble(x);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return r;
}

static int attr_double(PyObject *obj, PyObject *name, double *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* lst[i] += by */
static int list_add(PyObject *lst, Py_ssize_t i, long by)
{
    if (by == 0)
        return 0;
    PyObject *d = PyLong_FromLong(by);
    if (d == NULL)
        return -1;
    PyObject *nv = PyNumber_Add(PyList_GET_ITEM(lst, i), d);
    Py_DECREF(d);
    if (nv == NULL)
        return -1;
    return PyList_SetItem(lst, i, nv); /* steals nv */
}

/* -- per-batch state: the services and windows the batch touched --------- */
#define HOST_CACHE 8
typedef struct {
    PyObject *h;    /* the host's [count, 5xx, LogHistogram] */
    PyObject *hist; /* h[2] */
    PyObject *bins; /* h[2].bins */
    long dn, d5xx;
} HostEnt;

typedef struct {
    PyObject *w;
    double start;
    long dn, d5xx, d429, d4xx, dnew, dhosting, dwith_ip, dhist_n, dtop_total;
    PyObject *hist, *hist_bins, *hosts, *reg, *top, *top_counts;
    Py_ssize_t top_k;
    PyObject *at_min; /* top.at_min (NULL for None) and top.min_count, kept here during the batch */
    long min_count;
    PyObject *countries, *hosting_by, *endpoints, *agents;
    HostEnt hc[HOST_CACHE];
    int nhc;
    int ready; /* all of the above read: flushed with the batch */
} WinSlot;

typedef struct {
    PyObject *svc;
    PyObject *windows; /* svc.windows */
    double closed_until;
    int cur; /* its slot of the window of its last event, or -1 */
    PyObject *seen, *seen_cur, *seen_prev; /* the SeenFilter and its generations (lists of bytearrays) */
    long fill;                             /* seen.fill, written back with the batch */
    int fill_moved;
    double rotated_at;
    int rotated;
    double watermark;
    int wm_moved;
    int ready;
} SvcSlot;

typedef struct {
    SvcSlot *svcs;
    Py_ssize_t nsvc, capsvc;
    WinSlot *wins;
    Py_ssize_t nwin, capwin;
    PyObject *svc_index; /* service name -> slot index */
    PyObject *win_index; /* window object -> slot index */
} Batch;

static void win_release(WinSlot *s)
{
    Py_CLEAR(s->w);
    Py_CLEAR(s->hist);
    Py_CLEAR(s->hist_bins);
    Py_CLEAR(s->hosts);
    Py_CLEAR(s->reg);
    Py_CLEAR(s->top);
    Py_CLEAR(s->top_counts);
    Py_CLEAR(s->at_min);
    Py_CLEAR(s->countries);
    Py_CLEAR(s->hosting_by);
    Py_CLEAR(s->endpoints);
    Py_CLEAR(s->agents);
    for (int i = 0; i < s->nhc; i++) {
        Py_CLEAR(s->hc[i].h);
        Py_CLEAR(s->hc[i].hist);
        Py_CLEAR(s->hc[i].bins);
    }
    s->nhc = 0;
}

static void svc_release(SvcSlot *s)
{
    Py_CLEAR(s->svc);
    Py_CLEAR(s->windows);
    Py_CLEAR(s->seen);
    Py_CLEAR(s->seen_cur);
    Py_CLEAR(s->seen_prev);
}

/* Write a window's sums back (every slot is flushed, even after an error). */
static int win_flush(WinSlot *s)
{
    int r = 0;
    r |= attr_add(s->w, s_n, s->dn);
    r |= attr_add(s->w, s_n5xx, s->d5xx);
    r |= attr_add(s->w, s_n429, s->d429);
    r |= attr_add(s->w, s_n4xx, s->d4xx);
    r |= attr_add(s->w, s_new, s->dnew);
    r |= attr_add(s->w, s_hosting, s->dhosting);
    r |= attr_add(s->w, s_with_ip, s->dwith_ip);
    r |= attr_add(s->hist, s_n, s->dhist_n);
    r |= attr_add(s->top, s_total, s->dtop_total);
    r |= PyObject_SetAttr(s->top, s_at_min, s->at_min != NULL ? s->at_min : Py_None);
    PyObject *m = PyLong_FromLong(s->min_count);
    r |= m == NULL ? -1 : PyObject_SetAttr(s->top, s_min_count, m);
    Py_XDECREF(m);
    for (int i = 0; i < s->nhc; i++) {
        HostEnt *e = &s->hc[i];
        r |= list_add(e->h, 0, e->dn);
        r |= list_add(e->h, 1, e->d5xx);
        r |= attr_add(e->hist, s_n, e->dn);
    }
    return r ? -1 : 0;
}

static int svc_flush(SvcSlot *s, Batch *b, PyObject *source)
{
    int r = 0;
    if (s->cur >= 0 && b->wins[s->cur].ready)
        r |= PyObject_SetAttr(s->svc, s_last, b->wins[s->cur].w);
    if (s->rotated)
        r |= attr_set_float(s->svc, s_rotated_at, s->rotated_at);
    if (s->fill_moved) {
        PyObject *f = PyLong_FromLong(s->fill);
        r |= f == NULL ? -1 : PyObject_SetAttr(s->seen, s_fill, f);
        Py_XDECREF(f);
    }
    if (s->wm_moved)
        r |= attr_set_float(s->svc, s_watermark, s->watermark);
    r |= PyObject_SetAttr(s->svc, s_source, source);
    return r ? -1 : 0;
}

static int batch_flush(Batch *b, PyObject *source)
{
    int r = 0;
    for (Py_ssize_t i = 0; i < b->nwin; i++) {
        if (b->wins[i].ready && win_flush(&b->wins[i]) < 0)
            r = -1;
    }
    for (Py_ssize_t i = 0; i < b->nsvc; i++) {
        if (b->svcs[i].ready && svc_flush(&b->svcs[i], b, source) < 0)
            r = -1;
    }
    return r;
}

static void batch_free(Batch *b)
{
    for (Py_ssize_t i = 0; i < b->nwin; i++)
        win_release(&b->wins[i]);
    for (Py_ssize_t i = 0; i < b->nsvc; i++)
        svc_release(&b->svcs[i]);
    PyMem_Free(b->wins);
    PyMem_Free(b->svcs);
    Py_CLEAR(b->svc_index);
    Py_CLEAR(b->win_index);
}

/* A generation of the seen filter: a non-empty list (prev: possibly empty) of bytearrays whose sizes are powers of two. */
static int check_slices(PyObject *slices, int may_be_empty)
{
    if (!PyList_CheckExact(slices) || (!may_be_empty && PyList_GET_SIZE(slices) == 0))
        goto bad;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(slices); i++) {
        PyObject *sl = PyList_GET_ITEM(slices, i);
        if (!PyByteArray_CheckExact(sl))
            goto bad;
        Py_ssize_t n = PyByteArray_GET_SIZE(sl);
        if (n <= 0 || (n & (n - 1)) != 0)
            goto bad;
    }
    return 0;
bad:
    PyErr_SetString(PyExc_TypeError, "SeenFilter generations must be lists of bytearrays of power-of-two sizes");
    return -1;
}

/* (re)read the seen filter's generations and fill (after a rotate or a grow) */
static int svc_seen_refresh(SvcSlot *s)
{
    Py_CLEAR(s->seen_cur);
    Py_CLEAR(s->seen_prev);
    s->seen_cur = PyObject_GetAttr(s->seen, s_cur);
    if (s->seen_cur == NULL)
        return -1;
    s->seen_prev = PyObject_GetAttr(s->seen, s_prev);
    if (s->seen_prev == NULL)
        return -1;
    if (check_slices(s->seen_cur, 0) < 0 || check_slices(s->seen_prev, 1) < 0)
        return -1;
    PyObject *f = PyObject_GetAttr(s->seen, s_fill);
    if (f == NULL)
        return -1;
    s->fill = PyLong_AsLong(f);
    Py_DECREF(f);
    if (s->fill == -1 && PyErr_Occurred())
        return -1;
    s->fill_moved = 0;
    return 0;
}

/* sketches._bloom_has: whether a slice of the generation holds the three positions of hash h */
static int bloom_has(PyObject *slices, uint64_t h)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(slices); i++) {
        PyObject *sl = PyList_GET_ITEM(slices, i);
        uint64_t m = (uint64_t)PyByteArray_GET_SIZE(sl) * 8 - 1;
        const unsigned char *a = (const unsigned char *)PyByteArray_AS_STRING(sl);
        uint64_t p0 = h & m, p1 = (h >> 21) & m, p2 = (h >> 42) & m;
        if ((a[p0 >> 3] & (1 << (p0 & 7))) && (a[p1 >> 3] & (1 << (p1 & 7))) && (a[p2 >> 3] & (1 << (p2 & 7))))
            return 1;
    }
    return 0;
}

/* Call a method of the service's SeenFilter (rotate, grow) that changes its generations, with fill up to date. */
static int seen_call(SvcSlot *sv, PyObject *method)
{
    PyObject *f = PyLong_FromLong(sv->fill);
    if (f == NULL || PyObject_SetAttr(sv->seen, s_fill, f) < 0) {
        Py_XDECREF(f);
        return -1;
    }
    Py_DECREF(f);
    PyObject *r = PyObject_CallMethodNoArgs(sv->seen, method);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return svc_seen_refresh(sv);
}

/* The slot of service `name` (created, with the service itself if new). */
static Py_ssize_t svc_slot(Batch *b, PyObject *services, PyObject *name, PyObject *new_service)
{
    PyObject *ix = PyDict_GetItemWithError(b->svc_index, name);
    if (ix != NULL)
        return PyLong_AsSsize_t(ix);
    if (PyErr_Occurred())
        return -1;
    PyObject *svc = PyDict_GetItemWithError(services, name);
    if (svc != NULL)
        Py_INCREF(svc);
    else {
        if (PyErr_Occurred())
            return -1;
        svc = PyObject_CallNoArgs(new_service);
        if (svc == NULL)
            return -1;
        if (PyDict_SetItem(services, name, svc) < 0) {
            Py_DECREF(svc);
            return -1;
        }
    }
    if (b->nsvc == b->capsvc) {
        Py_ssize_t cap = b->capsvc ? 2 * b->capsvc : 8;
        SvcSlot *p = PyMem_Realloc(b->svcs, cap * sizeof(SvcSlot));
        if (p == NULL) {
            Py_DECREF(svc);
            PyErr_NoMemory();
            return -1;
        }
        b->svcs = p;
        b->capsvc = cap;
    }
    Py_ssize_t i = b->nsvc;
    SvcSlot *s = &b->svcs[i];
    memset(s, 0, sizeof(*s));
    s->svc = svc;
    s->cur = -1;
    b->nsvc++; /* from here on it is flushed and released with the batch */
    s->windows = PyObject_GetAttr(svc, s_windows);
    if (s->windows == NULL || !PyDict_CheckExact(s->windows)) {
        if (s->windows != NULL)
            PyErr_SetString(PyExc_TypeError, "ServiceWindows.windows must be a dict");
        return -1;
    }
    if (attr_double(svc, s_closed_until, &s->closed_until) < 0
        || attr_double(svc, s_rotated_at, &s->rotated_at) < 0
        || attr_double(svc, s_watermark, &s->watermark) < 0)
        return -1;
    s->seen = PyObject_GetAttr(svc, s_seen);
    if (s->seen == NULL || svc_seen_refresh(s) < 0)
        return -1;
    s->ready = 1;
    PyObject *v = PyLong_FromSsize_t(i);
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(b->svc_index, name, v);
    Py_DECREF(v);
    return r < 0 ? -1 : i;
}

static PyObject *get_checked(PyObject *obj, PyObject *name, PyTypeObject *type)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v != NULL && !Py_IS_TYPE(v, type)) {
        PyErr_Format(PyExc_TypeError, "%R must be a %s", name, type->tp_name);
        Py_CLEAR(v);
    }
    return v;
}

static int attr_long(PyObject *obj, PyObject *name, long *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* The slot of window w (a new one holds its containers). */
static Py_ssize_t win_slot(Batch *b, PyObject *w, double start)
{
    PyObject *ix = PyDict_GetItemWithError(b->win_index, w);
    if (ix != NULL)
        return PyLong_AsSsize_t(ix);
    if (PyErr_Occurred())
        return -1;
    if (b->nwin == b->capwin) {
        Py_ssize_t cap = b->capwin ? 2 * b->capwin : 8;
        WinSlot *p = PyMem_Realloc(b->wins, cap * sizeof(WinSlot));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->wins = p;
        b->capwin = cap;
    }
    Py_ssize_t i = b->nwin;
    WinSlot *s = &b->wins[i];
    memset(s, 0, sizeof(*s));
    Py_INCREF(w);
    s->w = w;
    s->start = start;
    b->nwin++;
    PyObject *hll = NULL;
    if ((s->hist = PyObject_GetAttr(w, s_hist)) == NULL
        || (s->hist_bins = get_checked(s->hist, s_bins, &PyDict_Type)) == NULL
        || (s->hosts = get_checked(w, s_hosts, &PyDict_Type)) == NULL
        || (hll = PyObject_GetAttr(w, s_hll)) == NULL
        || (s->reg = get_checked(hll, s_reg, &PyByteArray_Type)) == NULL
        || (s->top = PyObject_GetAttr(w, s_top)) == NULL
        || (s->top_counts = get_checked(s->top, s_counts, &PyDict_Type)) == NULL
        || (s->countries = get_checked(w, s_countries, &PyDict_Type)) == NULL
        || (s->hosting_by = get_checked(w, s_hosting_by, &PyDict_Type)) == NULL
        || (s->endpoints = get_checked(w, s_endpoints, &PyDict_Type)) == NULL
        || (s->agents = get_checked(w, s_agents, &PyDict_Type)) == NULL) {
        Py_XDECREF(hll);
        return -1;
    }
    Py_DECREF(hll);
    long k;
    if (attr_long(s->top, s_k, &k) < 0)
        return -1;
    s->top_k = (Py_ssize_t)k;
    PyObject *low = PyObject_GetAttr(s->top, s_at_min);
    if (low == NULL)
        return -1;
    if (low != Py_None && !PyList_CheckExact(low)) {
        Py_DECREF(low);
        PyErr_SetString(PyExc_TypeError, "SpaceSaving.at_min must be a list or None");
        return -1;
    }
    if (low == Py_None)
        Py_DECREF(low);
    else
        s->at_min = low;
    if (attr_long(s->top, s_min_count, &s->min_count) < 0)
        return -1;
    s->ready = 1;
    PyObject *v = PyLong_FromSsize_t(i);
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(b->win_index, w, v);
    Py_DECREF(v);
    return r < 0 ? -1 : i;
}

/* The window of service slot s that starts at `start` (found or created), as a slot. */
static Py_ssize_t window_of(Batch *b, SvcSlot *s, double start)
{
    PyObject *key = PyFloat_FromDouble(start);
    if (key == NULL)
        return -1;
    PyObject *w = PyDict_GetItemWithError(s->windows, key);
    if (w != NULL)
        Py_INCREF(w);
    else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    else {
        w = PyObject_CallOneArg(T_Window, key);
        if (w == NULL || PyDict_SetItem(s->windows, key, w) < 0) {
            Py_XDECREF(w);
            Py_DECREF(key);
            return -1;
        }
    }
    Py_DECREF(key);
    Py_ssize_t i = win_slot(b, w, start);
    Py_DECREF(w);
    return i;
}

/* The host cache entry of h in window slot s into *out, or NULL (no room: the caller counts directly). */
static int host_ent(WinSlot *s, PyObject *h, HostEnt **out)
{
    *out = NULL;
    for (int i = 0; i < s->nhc; i++)
        if (s->hc[i].h == h) {
            *out = &s->hc[i];
            return 0;
        }
    if (s->nhc == HOST_CACHE)
        return 0;
    HostEnt *e = &s->hc[s->nhc];
    PyObject *hist = PyList_GET_ITEM(h, 2);
    PyObject *bins = get_checked(hist, s_bins, &PyDict_Type);
    if (bins == NULL)
        return -1;
    Py_INCREF(h);
    Py_INCREF(hist);
    e->h = h;
    e->hist = hist;
    e->bins = bins;
    e->dn = e->d5xx = 0;
    s->nhc++;
    *out = e;
    return 0;
}

static int count_host(WinSlot *s, PyObject *host, long st, PyObject *bin)
{
    PyObject *h = PyDict_GetItemWithError(s->hosts, host);
    if (h == NULL) {
        if (PyErr_Occurred())
            return -1;
        PyObject *hist = PyObject_CallNoArgs(T_LogHist);
        if (hist == NULL)
            return -1;
        h = Py_BuildValue("[iiN]", 0, 0, hist);
        if (h == NULL)
            return -1;
        int r = PyDict_SetItem(s->hosts, host, h);
        Py_DECREF(h); /* the dict holds it */
        if (r < 0)
            return -1;
    }
    if (!PyList_CheckExact(h) || PyList_GET_SIZE(h) != 3) {
        PyErr_SetString(PyExc_TypeError, "a window's host entry must be [count, 5xx, LogHistogram]");
        return -1;
    }
    HostEnt *e;
    if (host_ent(s, h, &e) < 0)
        return -1;
    if (e != NULL) {
        e->dn++;
        if (st >= 500)
            e->d5xx++;
        return dict_incr(e->bins, bin, 1);
    }
    /* more hosts in this window and batch than the cache holds: as add does it */
    if (list_add(h, 0, 1) < 0 || (st >= 500 && list_add(h, 1, 1) < 0))
        return -1;
    PyObject *hist = PyList_GET_ITEM(h, 2);
    PyObject *bins = get_checked(hist, s_bins, &PyDict_Type);
    if (bins == NULL)
        return -1;
    int r = dict_incr(bins, bin, 1);
    Py_DECREF(bins);
    return r < 0 ? -1 : attr_add(hist, s_n, 1);
}

/* SpaceSaving.add(key) on a full table: sketches._evict, then key takes the victim's count + 1. */
static int top_evict_add(WinSlot *s, PyObject *key)
{
    PyObject *c = s->top_counts;
    for (;;) {
        if (s->at_min == NULL) {
            /* m = min(c.values()); at_min = the keys at m, in reverse insertion order */
            Py_ssize_t pos = 0;
            PyObject *k, *v;
            long m = 0;
            int any = 0;
            while (PyDict_Next(c, &pos, &k, &v)) {
                long x = PyLong_AsLong(v);
                if (x == -1 && PyErr_Occurred())
                    return -1;
                if (!any || x < m) {
                    m = x;
                    any = 1;
                }
            }
            if (!any) {
                PyErr_SetString(PyExc_ValueError, "min() arg is an empty sequence");
                return -1;
            }
            PyObject *low = PyList_New(0);
            if (low == NULL)
                return -1;
            pos = 0;
            while (PyDict_Next(c, &pos, &k, &v)) {
                if (PyLong_AsLong(v) == m && PyList_Append(low, k) < 0) {
                    Py_DECREF(low);
                    return -1;
                }
            }
            if (PyList_Reverse(low) < 0) {
                Py_DECREF(low);
                return -1;
            }
            s->at_min = low;
            s->min_count = m;
        }
        Py_ssize_t n = PyList_GET_SIZE(s->at_min);
        if (n == 0) {
            PyErr_SetString(PyExc_IndexError, "pop from empty list");
            return -1;
        }
        PyObject *victim = PyList_GET_ITEM(s->at_min, n - 1);
        Py_INCREF(victim);
        if (PyList_SetSlice(s->at_min, n - 1, n, NULL) < 0) {
            Py_DECREF(victim);
            return -1;
        }
        PyObject *v = PyDict_GetItemWithError(c, victim);
        if (v == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, victim);
            Py_DECREF(victim);
            return -1;
        }
        long x = PyLong_AsLong(v);
        if (x == -1 && PyErr_Occurred()) {
            Py_DECREF(victim);
            return -1;
        }
        if (x == s->min_count) {
            int r = PyDict_DelItem(c, victim);
            Py_DECREF(victim);
            if (r < 0)
                return -1;
            break;
        }
        Py_DECREF(victim);
        if (PyList_GET_SIZE(s->at_min) == 0)
            Py_CLEAR(s->at_min);
    }
    PyObject *nv = PyLong_FromLong(s->min_count + 1);
    if (nv == NULL)
        return -1;
    int r = PyDict_SetItem(c, key, nv);
    Py_DECREF(nv);
    if (PyList_GET_SIZE(s->at_min) == 0)
        Py_CLEAR(s->at_min);
    return r;
}

/* -- sketches.hash64: the client hash ---------------------------------------
 * The splitmix64 output function (S. Vigna's public-domain generator: add the
 * golden-ratio increment, then two xor-shift-multiply rounds) of
 *
 *     (CRC-32(b) << 32) | (CRC-16(b) << 16) | (len(b) mod 2**16),  b the UTF-8 of the text
 *
 * (sketches.py explains the choice; its hash64 is the reference, which the
 * tests compare this with). CRC-32 is zlib's (reflected polynomial
 * 0xEDB88320, initial value and final xor 0xFFFFFFFF); CRC-16 is
 * binascii.crc_hqx(b, 0) (polynomial 0x1021, most significant bit first,
 * initial value 0). Both a byte at a time from 256-entry tables made at
 * import. */
static uint32_t CRC32_TABLE[256];
static uint16_t CRC16_TABLE[256];

static void crc_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        uint16_t h = (uint16_t)(i << 8);
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
            h = (h & 0x8000) ? (uint16_t)((h << 1) ^ 0x1021) : (uint16_t)(h << 1);
        }
        CRC32_TABLE[i] = c;
        CRC16_TABLE[i] = h;
    }
}

static uint64_t hash_bytes(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    uint16_t h = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        c = CRC32_TABLE[(c ^ p[i]) & 0xFF] ^ (c >> 8);
        h = (uint16_t)(CRC16_TABLE[((h >> 8) ^ p[i]) & 0xFF] ^ (h << 8));
    }
    c ^= 0xFFFFFFFFu;
    uint64_t z = ((uint64_t)c << 32 | (uint64_t)h << 16 | ((uint64_t)n & 0xFFFF)) + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* hash64(text) into *out; -1 with the error of str.encode() (a lone surrogate) or a TypeError */
static int hash64_of(PyObject *text, uint64_t *out)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(text, &n); /* (an ASCII str's own characters; else cached in it) */
    if (u == NULL)
        return -1;
    *out = hash_bytes((const unsigned char *)u, n);
    return 0;
}

static PyObject *hash64(PyObject *module, PyObject *text)
{
    uint64_t h;
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "hash64(str)");
        return NULL;
    }
    if (hash64_of(text, &h) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(h);
}

static int count_client(SvcSlot *sv, WinSlot *s, PyObject *ip, double ts, double rot)
{
    s->dwith_ip++;
    /* the client's hash64, and from it what WindowAggregator._client_key
       derives: the HyperLogLog register and rank */
    uint64_t h;
    if (hash64_of(ip, &h) < 0)
        return -1;
    uint64_t hi = h >> HLL_P;
    long idx = (long)(h & ((1ULL << HLL_P) - 1));
    long rank = (64 - HLL_P) - (hi ? 64 - __builtin_clzll(hi) : 0) + 1;
    unsigned char *reg = (unsigned char *)PyByteArray_AS_STRING(s->reg);
    if (idx >= PyByteArray_GET_SIZE(s->reg)) {
        PyErr_SetString(PyExc_IndexError, "HyperLogLog register out of range");
        return -1;
    }
    if (rank > reg[idx])
        reg[idx] = (unsigned char)rank;
    /* the heavy hitters: SpaceSaving.add(ip), but for the eviction when full */
    PyObject *c = s->top_counts;
    PyObject *v = PyDict_GetItemWithError(c, ip);
    if (v != NULL) {
        if (dict_set_plus(c, ip, v, 1) < 0)
            return -1;
    }
    else if (PyErr_Occurred())
        return -1;
    else if (PyDict_GET_SIZE(c) < s->top_k) {
        if (PyDict_SetItem(c, ip, ONE) < 0)
            return -1;
        Py_CLEAR(s->at_min);
    }
    else if (top_evict_add(s, ip) < 0)
        return -1;
    s->dtop_total++;
    /* first-time clients: SeenFilter.check_and_add(h) */
    if (ts - sv->rotated_at >= rot) {
        if (sv->rotated_at != -INFINITY && seen_call(sv, s_rotate) < 0)
            return -1;
        sv->rotated_at = ts;
        sv->rotated = 1;
    }
    if (!bloom_has(sv->seen_cur, h)) {
        PyObject *last = PyList_GET_ITEM(sv->seen_cur, PyList_GET_SIZE(sv->seen_cur) - 1);
        Py_ssize_t size = PyByteArray_GET_SIZE(last);
        uint64_t m = (uint64_t)size * 8 - 1;
        unsigned char *a = (unsigned char *)PyByteArray_AS_STRING(last);
        uint64_t p0 = h & m, p1 = (h >> 21) & m, p2 = (h >> 42) & m;
        a[p0 >> 3] |= (unsigned char)(1 << (p0 & 7));
        a[p1 >> 3] |= (unsigned char)(1 << (p1 & 7));
        a[p2 >> 3] |= (unsigned char)(1 << (p2 & 7));
        sv->fill++;
        sv->fill_moved = 1;
        if (!bloom_has(sv->seen_prev, h))
            s->dnew++;
        if (sv->fill * 2 >= size) {
            /* SeenFilter.grow: a new slice when the generation has room (it decides) */
            if (seen_call(sv, s_grow) < 0)
                return -1;
            sv->fill_moved = 1;
        }
    }
    return 0;
}

/* One event into the batch's slots: WindowAggregator.add, from `svc = ...` to `svc.watermark`, f the row's fields. */
static int add_fields(Batch *b, PyObject *const *f, double ts, PyObject *services, PyObject *new_service,
                      double W, double rot, long *late)
{
    Py_ssize_t si = svc_slot(b, services, f[F_SERVICE], new_service);
    if (si < 0)
        return -1;
    SvcSlot *sv = &b->svcs[si];
    double start = floordiv(ts, W) * W;
    if (start < sv->closed_until) {
        (*late)++;
        start = sv->closed_until;
    }
    if (sv->cur < 0 || b->wins[sv->cur].start != start) {
        Py_ssize_t wi = window_of(b, sv, start);
        if (wi < 0)
            return -1;
        sv = &b->svcs[si]; /* (not moved: only the window slots grew) */
        sv->cur = (int)wi;
    }
    WinSlot *s = &b->wins[sv->cur];
    s->dn++;
    long st = PyLong_AsLong(f[F_STATUS]);
    if (st == -1 && PyErr_Occurred())
        return -1;
    if (st >= 500)
        s->d5xx++;
    else if (st == 429) {
        s->d429++;
        s->d4xx++;
    }
    else if (st >= 400)
        s->d4xx++;
    /* sketches.log_bin: int(math.log1p(v) * _LOG_K), the same libm log1p; asked
       (through its cache) for what is not a plain finite float >= 0 */
    PyObject *bin = NULL;
    double lat = PyFloat_CheckExact(f[F_LAT]) ? PyFloat_AS_DOUBLE(f[F_LAT]) : -1.0;
    if (LOG_K > 0.0 && lat >= 0.0 && lat <= DBL_MAX) {
        bin = PyLong_FromLong((long)(log1p(lat) * LOG_K));
        if (bin == NULL)
            return -1;
    }
    else if ((bin = PyDict_GetItemWithError(LOG_BINS, f[F_LAT])) != NULL)
        Py_INCREF(bin);
    else {
        if (PyErr_Occurred())
            return -1;
        bin = PyObject_CallOneArg(LOG_BIN, f[F_LAT]);
        if (bin == NULL)
            return -1;
    }
    int r = dict_incr(s->hist_bins, bin, 1);
    s->dhist_n++;
    if (r == 0 && f[F_HOST] != Py_None)
        r = count_host(s, f[F_HOST], st, bin);
    Py_DECREF(bin);
    if (r < 0)
        return -1;
    if (f[F_IP] != Py_None && count_client(sv, s, f[F_IP], ts, rot) < 0)
        return -1;
    if (f[F_COUNTRY] != Py_None && dict_incr(s->countries, f[F_COUNTRY], 1) < 0)
        return -1;
    if (f[F_ASN] != Py_None) {
        PyObject *name = PyDict_GetItemWithError(HOSTING, f[F_ASN]);
        if (name != NULL) {
            s->dhosting++;
            if (dict_incr(s->hosting_by, name, 1) < 0)
                return -1;
        }
        else if (PyErr_Occurred())
            return -1;
    }
    if (f[F_EP] != Py_None && dict_incr_capped(s->endpoints, f[F_EP], MAX_EP) < 0)
        return -1;
    if (f[F_UA] != Py_None && dict_incr_capped(s->agents, f[F_UA], MAX_UA) < 0)
        return -1;
    if (ts > sv->watermark) {
        sv->watermark = ts;
        sv->wm_moved = 1;
    }
    return 0;
}

/* add_fields for one row: its fields read (and released after) */
static int add_one(Batch *b, const Layout *lay, PyObject *row, double ts, PyObject *services,
                   PyObject *new_service, double W, double rot, long *late)
{
    PyObject *f[F_TS];
    int got = 0, r = -1;
    for (; got < F_TS; got++) {
        if ((f[got] = field(lay, row, got)) == NULL)
            goto out;
    }
    r = add_fields(b, f, ts, services, new_service, W, rot, late);
out:
    for (int i = 0; i < got; i++)
        Py_DECREF(f[i]);
    return r;
}

static PyObject *add_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "add_rows(services, rows, ts, source, new_service, window, lateness, "
                                         "seen_rotation, watermark, boundary)");
        return NULL;
    }
    if (T_Window == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "detectors._native.setup() was not called");
        return NULL;
    }
    PyObject *services = args[0], *rows = args[1], *tss = args[2], *source = args[3], *new_service = args[4];
    if (!PyDict_CheckExact(services)) {
        PyErr_SetString(PyExc_TypeError, "add_rows: services must be a dict");
        return NULL;
    }
    double num[5]; /* window, lateness, seen_rotation, watermark, boundary */
    for (int i = 0; i < 5; i++) {
        num[i] = PyFloat_AsDouble(args[5 + i]);
        if (num[i] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    double W = num[0], lateness = num[1], rot = num[2], wm = num[3], bnd = num[4];
    int err = 0;
    if (!(W > 0)) {
        PyErr_SetString(PyExc_ValueError, "window must be > 0");
        return NULL;
    }
    if (!PyList_CheckExact(rows) || !PyList_CheckExact(tss) || PyList_GET_SIZE(rows) != PyList_GET_SIZE(tss))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    /* Everything checked before anything changes: the rows' types and the times. */
    Layout *lay = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (lay == NULL || Py_TYPE(row) != lay->type) {
            lay = layout_of(Py_TYPE(row));
            if (lay == NULL)
                Py_RETURN_NOTIMPLEMENTED;
        }
        if (!PyFloat_CheckExact(PyList_GET_ITEM(tss, i)))
            Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *steps = PyList_New(0);
    if (steps == NULL)
        return NULL;
    Batch b;
    memset(&b, 0, sizeof(b));
    long late = 0;
    if ((b.svc_index = PyDict_New()) == NULL || (b.win_index = PyDict_New()) == NULL) {
        err = 1;
        goto done;
    }
    lay = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        PyObject *tsobj = PyList_GET_ITEM(tss, i);
        double ts = PyFloat_AS_DOUBLE(tsobj);
        if (lay == NULL || Py_TYPE(row) != lay->type)
            lay = layout_of(Py_TYPE(row));
        if (add_one(&b, lay, row, ts, services, new_service, W, rot, &late) < 0) {
            err = 1;
            break;
        }
        if (ts > wm) {
            wm = ts;
            double bound = floordiv(ts - lateness, W) * W;
            if (bound > bnd) {
                bnd = bound;
                if (PyList_Append(steps, tsobj) < 0) {
                    err = 1;
                    break;
                }
            }
        }
    }
    /* The objects as the events so far left them, error or not. */
    {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        int r = batch_flush(&b, source);
        if (et != NULL)
            PyErr_Restore(et, ev, tb);
        else if (r)
            err = 1;
    }
done:
    batch_free(&b);
    if (err) {
        Py_DECREF(steps);
        return NULL;
    }
    return Py_BuildValue("(Nddl)", steps, wm, bnd, late);
}

/* -- event times: timeutil.fast_utc_many ------------------------------------
 * The strings of the form YYYY-MM-DDTHH:MM:SS.fffZ (z too) that are valid
 * dates, as epoch seconds: (whole milliseconds) / 1000, a correctly rounded
 * float division, the float timeutil._fast_utc gives; None for any other
 * string (the scalar parser decides those). The date becomes days since the
 * epoch by days_from_civil (H. Hinnant), as the numpy version does. */
static PyObject *utc_one(PyObject *str)
{
    static const int digit_at[17] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22};
    static const int mdays[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!PyUnicode_Check(str) || !PyUnicode_IS_COMPACT_ASCII(str) || PyUnicode_GET_LENGTH(str) != 24)
        Py_RETURN_NONE;
    const unsigned char *c = (const unsigned char *)PyUnicode_DATA(str);
    int d[17];
    for (int i = 0; i < 17; i++) {
        d[i] = c[digit_at[i]] - '0';
        if (d[i] < 0 || d[i] > 9)
            Py_RETURN_NONE;
    }
    if (c[4] != '-' || c[7] != '-' || c[10] != 'T' || c[13] != ':' || c[16] != ':' || c[19] != '.'
        || (c[23] | 32) != 'z')
        Py_RETURN_NONE;
    long long year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3];
    int month = d[4] * 10 + d[5], day = d[6] * 10 + d[7], hour = d[8] * 10 + d[9];
    int minute = d[10] * 10 + d[11], sec = d[12] * 10 + d[13], ms = d[14] * 100 + d[15] * 10 + d[16];
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > mdays[month] + (leap && month == 2)
        || hour >= 24 || minute >= 60 || sec >= 60)
        Py_RETURN_NONE;
    long long y = year - (month <= 2);
    long long era = y / 400; /* y >= 0 */
    long long yoe = y - era * 400;
    long long doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    long long days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    long long millis = (days * 86400 + hour * 3600 + minute * 60 + sec) * 1000 + ms;
    return PyFloat_FromDouble((double)millis / 1000.0);
}

static PyObject *utc_many(PyObject *module, PyObject *strs)
{
    if (!PyList_CheckExact(strs)) {
        PyErr_SetString(PyExc_TypeError, "utc_many(list of str)");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(strs);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = utc_one(PyList_GET_ITEM(strs, i));
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

/* The ts field of a decoded message as epoch seconds in [lo, hi): a float ts
 * as it is, a string of the usual form as utc_one reads it; else None. */
static PyObject *row_time(const Layout *lay, PyObject *row, double lo, double hi)
{
    PyObject *t = field(lay, row, F_TS);
    if (t == NULL) {
        PyErr_Clear(); /* (no ts: the scalar parser's to judge) */
        Py_RETURN_NONE;
    }
    PyObject *v;
    if (PyFloat_CheckExact(t))
        v = t;
    else {
        v = utc_one(t);
        Py_DECREF(t);
        if (v == NULL)
            return NULL;
    }
    if (v != Py_None) {
        double x = PyFloat_AS_DOUBLE(v);
        if (!(lo <= x && x < hi))
            Py_SETREF(v, Py_NewRef(Py_None));
    }
    return v;
}

/* row_times(rows, lo, hi) -> (times, redo): row_time of each decoded message, and the indexes
 * where it is None (for the scalar parser); NotImplemented for rows it cannot read. */
static PyObject *row_times(PyObject *module, PyObject *args)
{
    PyObject *rows;
    double lo, hi;
    if (!PyArg_ParseTuple(args, "Odd", &rows, &lo, &hi))
        return NULL;
    if (!PyList_CheckExact(rows))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    Layout *lay = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (lay == NULL || Py_TYPE(row) != lay->type) {
            lay = layout_of(Py_TYPE(row));
            if (lay == NULL)
                Py_RETURN_NOTIMPLEMENTED;
        }
    }
    PyObject *out = PyList_New(n), *redo = PyList_New(0);
    if (out == NULL || redo == NULL)
        goto fail;
    lay = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (lay == NULL || Py_TYPE(row) != lay->type)
            lay = layout_of(Py_TYPE(row));
        PyObject *v = row_time(lay, row, lo, hi);
        if (v == NULL)
            goto fail;
        PyList_SET_ITEM(out, i, v);
        if (v == Py_None) {
            PyObject *ix = PyLong_FromSsize_t(i);
            if (ix == NULL || PyList_Append(redo, ix) < 0) {
                Py_XDECREF(ix);
                goto fail;
            }
            Py_DECREF(ix);
        }
    }
    return Py_BuildValue("(NN)", out, redo);
fail:
    Py_XDECREF(out);
    Py_XDECREF(redo);
    return NULL;
}

static PyObject *setup(PyObject *module, PyObject *args)
{
    PyObject *win, *hist, *hosting, *bins, *log_bin;
    Py_ssize_t max_ep, max_ua;
    int hll_p;
    double log_k;
    if (!PyArg_ParseTuple(args, "OOO!O!Odnni", &win, &hist, &PyDict_Type, &hosting, &PyDict_Type, &bins,
                          &log_bin, &log_k, &max_ep, &max_ua, &hll_p))
        return NULL;
    if (hll_p < 4 || hll_p > 16) {
        PyErr_SetString(PyExc_ValueError, "HyperLogLog precision out of range");
        return NULL;
    }
    HLL_P = hll_p;
    Py_XSETREF(T_Window, Py_NewRef(win));
    Py_XSETREF(T_LogHist, Py_NewRef(hist));
    Py_XSETREF(HOSTING, Py_NewRef(hosting));
    Py_XSETREF(LOG_BINS, Py_NewRef(bins));
    Py_XSETREF(LOG_BIN, Py_NewRef(log_bin));
    LOG_K = log_k;
    MAX_EP = max_ep;
    MAX_UA = max_ua;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add_rows", (PyCFunction)(void (*)(void))add_rows, METH_FASTCALL,
     "add_rows(services, rows, ts, source, new_service, window, lateness, seen_rotation, watermark, boundary)"
     " -> (steps, watermark, boundary, late): WindowAggregator.add for each row (see WindowAggregator.add_batch)"},
    {"utc_many", utc_many, METH_O, "utc_many(strs) -> [epoch seconds or None]: timeutil.fast_utc_many"},
    {"row_times", row_times, METH_VARARGS,
     "row_times(rows, lo, hi) -> (times, redo): their ts as epoch seconds in [lo, hi) (floats as they are, strings "
     "as utc_many reads them), else None, and the indexes of the Nones"},
    {"hash64", hash64, METH_O, "hash64(text) -> sketches.hash64(text)"},
    {"setup", setup, METH_VARARGS,
     "setup(WindowCounts, LogHistogram, HOSTING_ASNS, bins cache, log_bin, _LOG_K, max endpoints, max agents, HLL p)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "detectors._native", "WindowAggregator.add over a batch, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
#define INTERN(name) \
    if ((s_##name = PyUnicode_InternFromString(#name)) == NULL) \
        return NULL;
    NAMES(INTERN)
    if ((S_OTHER = PyUnicode_InternFromString("(other)")) == NULL || (ONE = PyLong_FromLong(1)) == NULL)
        return NULL;
    crc_tables();
    return PyModule_Create(&moduledef);
}
